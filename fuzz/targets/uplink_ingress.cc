// Uplink ingress: one packet as the kernel would route it into the uplink TUN: the NAT table's ingress lookup
// (flows, 1:1 addresses), routed addresses, the neighbour table, the synthesised Ethernet header and switching
// into the network's VNI.
#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  World& w = world();
  w.tx().from_uplink(d, n);
  w.drain();
  return 0;
}
