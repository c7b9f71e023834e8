// GRO merge: up to 32 IPv4 packets from the peer VTEP, each in its own VXLAN datagram to the TAP's MAC, in one
// receive batch: runs of TCP segments (or UDP datagrams) of one flow are merged into super-frames (gro.h) and written with a GSO
// virtio_net_hdr; anything else flushes the run. The fuzzer picks the sequence numbers, flags, lengths and options.
#include <vector>

#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  static const uint8_t kRemoteMac[6] = {0x02, 0xbb, 0, 0, 0, 9};
  World& w = world();
  std::vector<std::vector<uint8_t>> dgrams;
  std::vector<uint8_t> f;
  for (auto [p, len] : records(d, n, 32)) {
    f.assign(14, 0);
    std::copy(World::kTapMac, World::kTapMac + 6, f.begin());
    std::copy(kRemoteMac, kRemoteMac + 6, f.begin() + 6);
    f[12] = 0x08;
    f.insert(f.end(), p, p + len);
    dgrams.push_back(vxlan(42, f.data(), f.size()));
  }
  std::vector<RxProbe::Datagram> batch;
  for (auto& g : dgrams) batch.push_back({g.data(), g.size(), World::kPeer, w.underlay_port});
  if (!batch.empty()) w.wire().batch(batch.data(), batch.size());
  w.drain();
  return 0;
}
