// Capture with BPF filters: three sessions (UDP/ICMP, TCP SYN, ARP/fragments; snap length 200) see every frame
// at the port, VNI and wire points while one input goes through a pipeline (first byte: a TAP read, or a VXLAN
// datagram from the peer); their records are drained after each input.
#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  if (n < 1) return 0;
  World& w = world({.captures = true});
  if (d[0] & 1) {
    RxProbe::Datagram g{d + 1, n - 1, World::kPeer, w.underlay_port};
    w.wire().batch(&g, 1);
  } else {
    w.tx().from_port(w.tap, d + 1, n - 1);
  }
  w.drain();
  return 0;
}
