// TAP TX: one read from a TAP with offloads, virtio_net_hdr first: plain frames, frames with a partial checksum
// to finish, and TCPv4 super-frames of up to 64 KiB cut into segments; through the port filter (when the first
// byte is odd, the application connection's port), the MTU check and ICMP "fragmentation needed", punt, NAT
// towards the memory uplink, learning, switching and encapsulation to the peer VTEP.
#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  if (n < 1) return 0;
  World& w = world();
  w.tx().from_port((d[0] & 1) ? w.filtered : w.tap, d + 1, n - 1);
  static unsigned inputs = 0;
  if (++inputs % 512 == 0) w.tx().tick();  // FDB ageing and the NAT sweep, as the TX thread does each second
  w.drain();
  return 0;
}
