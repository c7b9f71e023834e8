// The punt channel: classifiers that pick control frames out of the pipelines, and a bounded
// ring that carries copies of them to JS. Producers are the engine threads; the consumer is JS,
// which drains the whole ring in one call after one wake-up (never one callback per frame).
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace appnet {

// A classifier: every field that is set must match. Unset fields are -1 (or 0 for dst_ip).
struct PuntRule {
  uint32_t id = 0;
  int ethertype = -1;   // e.g. 0x0806 for ARP
  int ip_proto = -1;    // IPv4 protocol, implies ethertype 0x0800
  uint32_t dst_ip = 0;  // IPv4 destination, host order; 0 = any
  int dst_port = -1;    // UDP/TCP destination port, implies ip_proto 6 or 17
  int vni = -1;         // only frames of this VNI
  bool consume = true;  // false: forward as usual and punt a copy
};

struct PuntItem {
  uint32_t rule;
  int port;          // local port the frame came from, or -1 when it came from the wire
  uint32_t vni;
  uint32_t remote;   // outer source address (host order) when from the wire, else 0
  uint16_t remote_port;  // source UDP port of a punted link datagram, else 0
  std::vector<uint8_t> frame;
};

class PuntTable {
 public:
  static constexpr size_t kCapacity = 1024;
  static constexpr size_t kMaxFrame = 4096;

  // Rules are only changed by JS and only read under the engine's configuration lock.
  uint32_t add(PuntRule r);
  bool remove(uint32_t id);
  bool empty() const { return rules_.empty(); }
  // Returns the first matching rule or nullptr.
  const PuntRule* match(uint32_t vni, const uint8_t* frame, size_t len) const;

  // Copies a frame into the ring; false (and counted) when full or too large.
  bool push(const PuntRule& r, int port, uint32_t vni, uint32_t remote, const uint8_t* f,
            size_t len);
  // Copies a whole datagram (a link handshake message) under a reserved rule id, into the handshake queue:
  // its own, bounded (kHandshakeCapacity), so that a flood of handshakes never takes the room of DHCP, ARP
  // and ICMP punts. False when that queue is full.
  bool push_raw(uint32_t rule, uint32_t remote, uint16_t remote_port, const uint8_t* d, size_t len);
  // Both queues, control frames first.
  std::vector<PuntItem> drain();
  static constexpr size_t kHandshakeCapacity = 256;

  std::function<void()> notify;  // called once when the ring turns non-empty
  uint64_t dropped() const { return dropped_; }
  uint64_t punted() const { return punted_; }

 private:
  bool enqueue(std::vector<PuntItem>& ring, size_t capacity, PuntItem item, const uint8_t* f, size_t len);
  std::vector<PuntRule> rules_;
  uint32_t next_id_ = 1;
  std::mutex mu_;
  std::vector<PuntItem> ring_;
  std::vector<PuntItem> handshakes_;
  bool notified_ = false;
  uint64_t dropped_ = 0, punted_ = 0;
};

// Handshake messages per source address: a token bucket each (kPerSecond, kBurst), as WireGuard limits them.
// Used by the link RX thread alone. The table is bounded: past kMaxSources it starts again empty, which gives
// every source a fresh burst at worst (a flood from many addresses is bounded by the queue instead).
class HandshakeLimiter {
 public:
  static constexpr double kPerSecond = 20;
  static constexpr double kBurst = 10;
  static constexpr size_t kMaxSources = 4096;
  bool allow(uint32_t src, uint64_t now_ms);

 private:
  struct Bucket { double tokens; uint64_t at_ms; };
  std::unordered_map<uint32_t, Bucket> buckets_;
};

}  // namespace appnet
