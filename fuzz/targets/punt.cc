// Punt classification: frames against the ARP, DHCP and gateway-ICMP rules, from an instance (first byte 0 mod 3),
// from the wire (1), or as link port messages (2: handshake sizes and the per-source rate limit, with the source
// address picked by the fuzzer so that the limiter's table fills). Up to 16 per input.
#include <vector>

#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  World& w = world();
  std::vector<uint8_t> f;
  for (auto [p, len] : records(d, n, 16)) {
    if (len < 2) continue;
    switch (p[0] % 3) {
      case 0:
        f.assign(10, 0);  // virtio_net_hdr: nothing to offload
        f.insert(f.end(), p + 1, p + len);
        w.tx().from_port(w.tap, f.data(), f.size());
        break;
      case 1: {
        auto g = vxlan(42, p + 1, len - 1);
        RxProbe::Datagram dg{g.data(), g.size(), World::kPeer, w.underlay_port};
        w.wire().batch(&dg, 1);
        break;
      }
      default: {
        RxProbe::Datagram dg{p + 2, len - 2, 0xc6120000u | p[1], 51820};
        w.link().batch(&dg, 1);
      }
    }
  }
  w.drain();
  return 0;
}
