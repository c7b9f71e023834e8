// Encrypted links: the peers this host keeps sessions with, and their session keys.
//
// A peer is another host, named by its registered underlay address (its "vtep": what FDB
// entries and flood lists hold). Its endpoint (address and port that datagrams go to) starts
// there and moves when an authenticated packet arrives from somewhere else (roaming).
//
// Each peer has up to three sessions, installed by JS after a Noise IK handshake:
//   current   used for sending (and receiving);
//   previous  still accepted on receive, so a rekey loses nothing in flight;
//   next      a responder's new session, unconfirmed until the first data message arrives on
//             it; only then is it promoted to current (the initiator has proved it holds the keys).
// Slots are atomic pointers. Sessions are only created or freed by JS configuration calls, which
// hold the engine's configuration lock exclusively; the pipelines hold it shared, so a pointer
// they load stays valid for their whole batch. The RX thread's promotion only moves pointers.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "link_crypto.h"
#include "replay.h"

namespace appnet {

constexpr uint64_t kRejectAfterMs = 180000;  // a session older than this is never used

enum LinkDrop : int {
  kLinkDropMalformed = 0,
  kLinkDropUnknownIndex,
  kLinkDropExpired,
  kLinkDropReplay,
  kLinkDropBadTag,
  kLinkDropNoSession,
  kLinkDropCounterExhausted,
  kLinkDropHandshakeRate,       // handshake messages from one source above its rate (HandshakeLimiter)
  kLinkDropHandshakeQueueFull,  // handshake messages while their own punt queue was full
  kLinkDropCount
};

inline const char* link_drop_name(int d) {
  static const char* names[kLinkDropCount] = {"malformed", "unknown_index", "expired", "replay",
                                              "bad_tag", "no_session", "counter_exhausted",
                                              "handshake_rate", "handshake_queue_full"};
  return names[d];
}

struct LinkCounters {
  std::atomic<uint64_t> tx_packets{0}, tx_bytes{0}, rx_packets{0}, rx_bytes{0};
  std::atomic<uint64_t> keepalives_tx{0}, keepalives_rx{0}, roams{0}, handshakes_rx{0};
  std::atomic<uint64_t> drops[kLinkDropCount] = {};
  void drop(LinkDrop d) { drops[d].fetch_add(1, std::memory_order_relaxed); }
};

struct LinkSession {
  uint32_t local_idx = 0, remote_idx = 0;
  uint8_t send_key[link::kKeyLen], recv_key[link::kKeyLen];
  bool initiator = false;
  uint64_t created_ms = 0;
  std::atomic<uint64_t> send_ctr{0};
  link::ReplayWindow replay;  // touched only by the link RX thread

  bool expired(uint64_t now) const { return now - created_ms >= kRejectAfterMs; }
};

struct LinkPeer {
  uint32_t vtep = 0;                  // identity: the registered underlay address (host order)
  std::atomic<uint64_t> endpoint{0};  // ip << 16 | port, host order
  std::atomic<LinkSession*> current{nullptr}, previous{nullptr}, next{nullptr};
  std::vector<std::unique_ptr<LinkSession>> owned;  // every session a slot may point to
  std::atomic<uint64_t> last_tx_ms{0}, last_rx_ms{0};
  std::atomic<bool> want_session{false};  // traffic was dropped for lack of a session
  LinkCounters counters;

  static uint64_t pack(uint32_t ip, uint16_t port) { return uint64_t(ip) << 16 | port; }
  uint32_t endpoint_ip() const { return uint32_t(endpoint.load(std::memory_order_relaxed) >> 16); }
  uint16_t endpoint_port() const { return uint16_t(endpoint.load(std::memory_order_relaxed)); }

  // The session to send with, or null: none yet, expired, or its counter is used up.
  LinkSession* sendable(uint64_t now) const {
    LinkSession* s = current.load(std::memory_order_acquire);
    if (!s || s->expired(now)) return nullptr;
    return s;
  }
};

// The peer table. Mutators run under the engine's exclusive configuration lock.
class LinkTable {
 public:
  LinkPeer* peer(uint32_t vtep) const {
    auto it = peers_.find(vtep);
    return it == peers_.end() ? nullptr : it->second.get();
  }
  struct Found {
    LinkPeer* peer;
    LinkSession* session;
  };
  bool by_index(uint32_t local_idx, Found* out) const {
    auto it = index_.find(local_idx);
    if (it == index_.end()) return false;
    *out = it->second;
    return true;
  }

  void add_peer(uint32_t vtep, uint32_t ip, uint16_t port);
  bool remove_peer(uint32_t vtep);
  // Installs a session from a completed handshake (see the header comment for the slots).
  void install(uint32_t vtep, uint32_t local_idx, uint32_t remote_idx, const uint8_t* send_key,
               const uint8_t* recv_key, bool initiator, uint64_t now);
  // Drops every session of a peer older than kRejectAfterMs (and the peer's slots to them).
  void expire(uint64_t now);
  // Moves a confirmed `next` into `current` (RX thread, on the first data message on it).
  static void promote(LinkPeer& p, LinkSession* s);

  const std::unordered_map<uint32_t, std::unique_ptr<LinkPeer>>& peers() const { return peers_; }
  LinkCounters& global() { return global_; }

 private:
  void collect(LinkPeer& p);  // frees sessions no slot points to

  std::unordered_map<uint32_t, std::unique_ptr<LinkPeer>> peers_;
  std::unordered_map<uint32_t, Found> index_;
  LinkCounters global_;  // drops that belong to no peer (unknown index, malformed)
};

}  // namespace appnet
