{
  "targets": [
    {
      "target_name": "appnet",
      "sources": [
        "src/addon.cc",
        "src/addon_codecs.cc",
        "src/addon_snapshots.cc",
        "src/device.cc",
        "src/engine.cc",
        "src/ports.cc",
        "src/switch.cc",
        "src/engine_tx.cc",
        "src/engine_rx.cc",
        "src/tun_port.cc",
        "src/punt.cc",
        "src/links.cc",
        "src/capture.cc",
        "src/link_crypto.cc",
        "src/addon_link.cc",
        "src/nat.cc",
        "src/nat_translate.cc",
        "src/addon_nat.cc",
        "src/uplink.cc",
        "src/memory_device.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fexceptions"],
      "libraries": ["-lpthread", "-lsodium", "-lpcap"]
    }
  ]
}
