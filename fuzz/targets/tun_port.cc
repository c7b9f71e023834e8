// TUN port: an IPv4 packet read from the TUN (even first byte: the engine frames it, asks for unknown neighbours
// with ARP, answers oversize DF packets with ICMP) or a frame from the wire for the TUN (odd: ARP requests for its
// address are answered, IPv4 to its MAC is delivered without the Ethernet header, its neighbour table learns).
#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  if (n < 1) return 0;
  World& w = world();
  if (d[0] & 1) {
    auto g = vxlan(42, d + 1, n - 1);
    RxProbe::Datagram dg{g.data(), g.size(), World::kPeer, w.underlay_port};
    w.wire().batch(&dg, 1);
  } else {
    w.tx().from_port(w.tun, d + 1, n - 1);
  }
  static unsigned inputs = 0;
  if (++inputs % 512 == 0) w.tx().tick();
  w.drain();
  return 0;
}
