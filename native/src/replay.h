// Anti-replay window for received data-message counters: RFC 6479 ("IPsec Anti-Replay Algorithm
// without Bit Shifting"), as WireGuard uses it.
//
// The bitmap is 4096 bits: a ring of 64 blocks of 64 bits. The block holding the highest accepted
// counter is the "current" one; moving forward clears only the blocks skipped over (at most the whole
// ring), never shifts. One block must stay free to be recycled, so the acceptance window is
//   kWindow = (64 - 1) * 64 = 4032 counters:
// a counter c is accepted iff c < kRejectAfterMessages, c was not accepted before, and
// c > highest or highest - c <= 4032. Anything older is refused as "too old", even if new.
//
// The engine checks BEFORE decrypting (cheap rejection of replays without spending a Poly1305 pass)
// and marks only AFTER the tag verified (a forged counter must not move the window). mark()
// re-checks, so a packet that passed check() can still be refused if a twin was marked in between.
// Not thread-safe: one owner (the RX thread handling the session) or an external lock.
#pragma once
#include <cstddef>
#include <cstdint>

#include "link_crypto.h"

namespace appnet {
namespace link {

class ReplayWindow {
 public:
  static constexpr unsigned kBlockBitsLog = 6;
  static constexpr uint64_t kBlockBits = uint64_t(1) << kBlockBitsLog;  // 64
  static constexpr size_t kBlocks = 64;                                  // ring of 64 x 64 = 4096 bits
  static constexpr uint64_t kWindow = (kBlocks - 1) * kBlockBits;        // 4032
  static_assert((kBlocks & (kBlocks - 1)) == 0, "the ring index is a mask");

  ReplayWindow() { reset(); }

  // Forgets every counter: for a new session (a new key restarts counters at 0).
  void reset() {
    last_ = 0;
    for (auto& b : ring_) b = 0;
  }

  // Would mark(c) accept c? Does not change the window.
  bool check(uint64_t c) const {
    if (c >= kRejectAfterMessages) return false;
    if (c > last_) return true;
    if (last_ - c > kWindow) return false;
    return !(ring_[block_of(c)] & bit_of(c));
  }

  // Accepts and records c; false if c is a replay, too old, or beyond the counter limit.
  bool mark(uint64_t c) {
    if (c >= kRejectAfterMessages) return false;
    if (c > last_) {
      uint64_t cur = last_ >> kBlockBitsLog;
      uint64_t diff = (c >> kBlockBitsLog) - cur;
      if (diff > kBlocks) diff = kBlocks;  // a big jump clears the whole ring once, O(1) regardless of size
      for (uint64_t i = 1; i <= diff; i++) ring_[(cur + i) & (kBlocks - 1)] = 0;
      last_ = c;
    } else if (last_ - c > kWindow) {
      return false;
    }
    uint64_t& block = ring_[block_of(c)];
    uint64_t bit = bit_of(c);
    if (block & bit) return false;
    block |= bit;
    return true;
  }

  // Highest accepted counter (0 before any).
  uint64_t highest() const { return last_; }

 private:
  static size_t block_of(uint64_t c) { return size_t((c >> kBlockBitsLog) & (kBlocks - 1)); }
  static uint64_t bit_of(uint64_t c) { return uint64_t(1) << (c & (kBlockBits - 1)); }

  uint64_t last_;
  uint64_t ring_[kBlocks];
};

}  // namespace link
}  // namespace appnet
