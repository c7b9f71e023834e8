#!/usr/bin/env bash
# Installs whatever is missing for appnet on a Debian machine, as root: Debian packages,
# npm packages (npm ci), and the native addon. Safe to run again: it skips what is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime: iproute2 (namespaces, veth), libsodium (link AEAD), libpcap (capture filters).
# Build: make, g++, python3 (node-gyp). dnsmasq and udhcpc: the DHCP replay test's real server and client.
# Tests and benchmarks: ping, tcpdump, tshark (and editcap), iperf3, ethtool, iptables (link attack tests),
# wireguard-go/wg (the link benchmark's anchor).
# Many machines and workloads: etcd (the store's cluster and etcdctl), podman with runc, the CNI plugins and
# busybox-static (containers on a local image), Prometheus (scrapes /metrics), Chromium (the status page),
# python3-requests (Shaken Fist's client exchanges), clang, llvm and libclang-rt (libFuzzer, ASan, UBSan); nebula and tinc (the
# link benchmark's other userspace anchors).
PKGS=(iproute2 iputils-ping procps psmisc util-linux libsodium-dev libpcap-dev make g++ python3 tcpdump tshark iperf3 ethtool iptables
      wireguard-go wireguard-tools dnsmasq-base udhcpc
      etcd-server etcd-client podman runc containernetworking-plugins busybox-static prometheus chromium python3-requests
      clang llvm libclang-rt-14-dev nebula tinc)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=node_modules/.appnet-lock-sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

addon=native/build/Release/appnet.node
if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" -print -quit)" ]; then
  echo "setup: building the native addon"
  npx --no-install node-gyp rebuild --directory native --loglevel=error >/dev/null
fi

# The daemon and the CLI run from JavaScript bundles in dist/ (bin/bundled.js); build them now rather than
# on first start. The launchers rebuild them whenever a source is newer, so this is only a head start.
node bin/bundled.js

# The CLI and the daemon as commands (the checkout's launchers; `npx appnet` works too).
for cmd in appnet appnetd; do
  target="$PWD/bin/$cmd.js"
  if [ "$(readlink -f /usr/local/bin/$cmd 2>/dev/null)" != "$target" ]; then
    ln -sf "$target" /usr/local/bin/$cmd
  fi
done

# The CNI plugin where runtimes look for `type: "appnet"`. A wrapper, not a symlink: the runtime runs
# plugins with a minimal environment (no PATH to node), so it names node by its full path.
cni_wrapper="#!/bin/sh
exec $(command -v node) $PWD/bin/appnet-cni.js \"\$@\""
mkdir -p /opt/cni/bin
if [ "$(cat /opt/cni/bin/appnet 2>/dev/null)" != "$cni_wrapper" ]; then
  printf '%s\n' "$cni_wrapper" > /opt/cni/bin/appnet.tmp && chmod 755 /opt/cni/bin/appnet.tmp && mv /opt/cni/bin/appnet.tmp /opt/cni/bin/appnet
fi
