// One engine set up as a host would be, for the fuzz targets (fuzz/README.md): in-memory ports and uplink
// (native/src/memory_device.h), its underlay on loopback, and the pipelines driven on the fuzzer's thread through
// probes (native/src/pipeline_probe.h). Every target feeds one input through a real pipeline and then drains
// everything the engine produced, so state carries over only where the engine keeps it (FDB, NAT flows).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "../native/src/engine.h"
#include "../native/src/pipeline_probe.h"

namespace appnet::fuzz {

// The world every target shares. Addresses are host order.
//   VNI 42, 198.18.42.0/24, gateway .1 (NAT through the memory uplink, external 198.18.99.1), flooded to
//   the peer VTEP 127.0.0.2: ports `tap` (offloads: virtio_net_hdr, TSO, GRO) and `tun` (198.18.42.3).
//   VNI 44: `filtered`, an application connection's port (TCP 198.18.44.2 -> 198.18.44.3:5201).
//   The peer 127.0.0.2 is a known VTEP and a link peer with one installed session (kLinkRecvKey).
//   Punt rules: ARP, DHCP (UDP 67), ICMP to the gateway. Optional capture sessions with BPF filters.
struct World {
  static constexpr uint32_t kPeer = 0x7f000002, kStranger = 0x7f000003;
  static constexpr uint32_t kGateway = 0xc6122a01, kTunIp = 0xc6122a03, kExternal = 0xc6126301;
  static constexpr uint32_t kLocalIdx = 0x11223344;
  static constexpr uint8_t kGatewayMac[6] = {0x02, 0xaa, 0, 0, 0, 1};
  static constexpr uint8_t kTapMac[6] = {0x02, 0, 0, 0, 0x2a, 2};
  static constexpr uint8_t kTunMac[6] = {0x02, 0, 0, 0, 0x2a, 3};
  static constexpr uint8_t kFilteredMac[6] = {0x02, 0, 0, 0, 0x2c, 2};
  static const uint8_t kLinkRecvKey[32];

  struct Options {
    bool captures = false;
  };
  explicit World(Options o);
  ~World();

  // Installs the link session afresh (an empty replay window, a new clock): each input starts alike.
  void reset_link();
  // Reads and discards everything the engine wrote: ports, uplink, the peer's sockets, punts, captures.
  void drain();

  Engine& engine() { return *engine_; }
  RxProbe& wire() { return *wire_; }
  RxProbe& link() { return *link_; }
  TxProbe& tx() { return *tx_; }
  int tap, tun, filtered;
  uint16_t underlay_port, link_port;

 private:
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<RxProbe> wire_, link_;
  std::unique_ptr<TxProbe> tx_;
  uint16_t peer_link_port_ = 0;
  int sink_fd_ = -1, link_sink_fd_ = -1, uplink_fd_ = -1;  // the peer VTEP's sockets; the uplink's outside
  std::vector<uint32_t> captures_;
  std::vector<uint8_t> buf_;
};

// The world of a target, made on its first input (libFuzzer has no init hook that runs after flags).
World& world(World::Options o = {});

// Splits an input into records of [2-byte big-endian length][bytes] (a shorter tail is one last record).
std::vector<std::pair<const uint8_t*, size_t>> records(const uint8_t* d, size_t n, size_t max_records);

// A VXLAN header for `vni` in front of `frame` (what a peer VTEP sends).
std::vector<uint8_t> vxlan(uint32_t vni, const uint8_t* frame, size_t len);

}  // namespace appnet::fuzz
