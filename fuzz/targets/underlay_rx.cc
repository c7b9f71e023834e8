// Underlay RX: one datagram at the VXLAN port, from the known peer VTEP (or, when the first byte is odd, from an
// address that is not one) through the VTEP check, decapsulation, learning, punt, NAT off the wire, switching and
// delivery (coalesced into super-frames for the TAP, Ethernet stripped for the TUN, the filter for app ports).
#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  if (n < 1) return 0;
  World& w = world();
  RxProbe::Datagram g{d + 1, n - 1, (d[0] & 1) ? World::kStranger : World::kPeer, w.underlay_port};
  w.wire().batch(&g, 1);
  w.drain();
  return 0;
}
