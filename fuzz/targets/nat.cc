// NAT egress and ingress: a sequence of IPv4 packets, each (by its first byte) either sent by an instance on the
// NAT network to the gateway MAC (egress: source NAT or 1:1, towards the memory uplink) or read from the uplink
// (ingress: back to the instance, passthrough to a routed address, or no_neighbour). Flows made by one packet are
// found by the next: the fuzzer reaches established flows, RSTs, FINs and ICMP errors quoting a flow.
#include <vector>

#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  World& w = world();
  std::vector<uint8_t> f;
  for (auto [p, len] : records(d, n, 16)) {
    if (len < 1) continue;
    if (p[0] & 1) {
      w.tx().from_uplink(p + 1, len - 1);
      continue;
    }
    // virtio_net_hdr (nothing to offload), Ethernet to the gateway from the TAP instance, the packet.
    f.assign(10 + 14, 0);
    std::copy(World::kGatewayMac, World::kGatewayMac + 6, f.begin() + 10);
    std::copy(World::kTapMac, World::kTapMac + 6, f.begin() + 16);
    f[22] = 0x08;
    f.insert(f.end(), p + 1, p + len);
    w.tx().from_port(w.tap, f.data(), f.size());
  }
  static unsigned inputs = 0;
  if (++inputs % 256 == 0) w.tx().tick();
  w.drain();
  return 0;
}
