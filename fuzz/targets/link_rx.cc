// Link RX: a batch of messages at the link port from the peer, each either raw bytes (type, index, counter, tag
// as the fuzzer makes them; handshake types go to the punt queue through the size check and rate limit) or, when
// its first byte is odd, a data message sealed here with the installed session's key around the fuzzer's
// plaintext at the counter it picks (two bytes), so that index lookup, replay window, open and the VXLAN
// pipeline behind it are all reached. The session is installed afresh for every input.
#include <vector>

#include "../../native/src/link_crypto.h"
#include "../harness.h"

using namespace appnet;
using namespace appnet::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
  World& w = world();
  w.reset_link();
  std::vector<std::vector<uint8_t>> msgs;
  for (auto [p, len] : records(d, n, 8)) {
    if (len >= 3 && (p[0] & 1)) {
      uint64_t counter = uint64_t(p[1]) << 8 | p[2];
      std::vector<uint8_t> m(len - 3 + link::kOverhead);
      link::seal(World::kLinkRecvKey, World::kLocalIdx, counter, p + 3, len - 3, m.data());
      msgs.push_back(std::move(m));
    } else {
      msgs.emplace_back(p, p + len);
    }
  }
  std::vector<RxProbe::Datagram> batch;
  for (auto& m : msgs) batch.push_back({m.data(), m.size(), World::kPeer, 51820});
  if (!batch.empty()) w.link().batch(batch.data(), batch.size());
  w.drain();
  return 0;
}
