// NAT and connection tracking core: source NAT with port translation (egress NAT of a network through
// its floating gateway address), 1:1 NAT (floating IPs), and the conntrack table behind them.
//
// Pure: no syscalls, no clock (every call takes `now_ms`, a monotonic millisecond count), no
// allocation per packet. The conntrack table has a fixed capacity chosen at construction; rules live in
// small maps that only the control path (add_/remove_ calls) allocates in.
//
// Packets are IPv4 packets (the IP header onwards, no Ethernet), rewritten in place with RFC 1624
// incremental checksum updates, so a packet that arrived with a bad checksum still carries a bad one.
//
// Threading: the engine calls translate() from one thread per direction and the control module calls
// the rule functions and sweep() from the JS thread. Both directions touch the same flows (egress
// creates them, ingress advances their TCP state and timers), so every public function takes one
// std::mutex. That is a deliberate first step: it is correct and simple, and the critical section is a
// hash probe plus a few stores. If profiling shows contention, the flow's timer and state can become
// relaxed atomics so that only flow creation and removal need the lock.
//
// See docs/nat.md for the design and what the integrator must call where.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "wire.h"

namespace appnet::nat {

enum class Dir : uint8_t {
  kEgress = 0,   // from a network (inside) towards the uplink: source translated
  kIngress = 1,  // from the uplink towards a network: destination translated back
};

enum class Action : uint8_t { kTranslated = 0, kPassthrough, kDrop };

enum Reason : uint8_t {
  kNone = 0,
  kTruncatedIp,      // shorter than 20 bytes, than IHL*4, or than the total length field
  kBadIpHeader,      // version is not 4, IHL below 5, or total length below IHL*4
  kTruncatedL4,      // TCP/UDP/ICMP header (or an ICMP error's quote) does not fit in the packet
  kFragment,         // a fragment of a source-NAT flow: we do not reassemble (1:1 NAT translates them)
  kUnsupported,      // a protocol or ICMP type source NAT cannot track (not TCP, UDP, ICMP echo/error)
  kNoFlow,           // ingress to a source-NAT address, or an ICMP error, that matches no tracked flow
  kConntrackFull,    // a new flow while the table is at capacity: dropped, existing flows unaffected
  kPortsExhausted,   // no free external port towards this remote endpoint in the rule's range
  kInvalidTcp,       // a TCP segment that cannot start a flow: RST, or neither SYN nor ACK
  kReasonCount
};
const char* reason_name(int r);

struct Verdict {
  Action action;
  Reason reason;  // kNone unless action == kDrop
  uint32_t vni;   // ingress, translated: the network to deliver to; egress: the caller's VNI
};

// TCP states, after Linux nf_conntrack_proto_tcp (without its window tracking).
enum TcpState : uint8_t {
  kTcpNone = 0, kTcpSynSent, kTcpSynRecv, kTcpEstablished, kTcpFinWait, kTcpLastAck, kTcpTimeWait,
  kTcpClose, kTcpStateCount
};
const char* tcp_state_name(int s);

// Idle timeouts in seconds; see docs/nat.md for where each default comes from.
struct Timeouts {
  uint32_t tcp_syn_sent = 120;
  uint32_t tcp_syn_recv = 60;
  uint32_t tcp_established = 7440;  // RFC 5382 REQ-5: at least 2 h 4 min
  uint32_t tcp_fin_wait = 120;
  uint32_t tcp_last_ack = 30;
  uint32_t tcp_time_wait = 120;
  uint32_t tcp_close = 10;
  uint32_t udp = 30;           // until the remote has answered
  uint32_t udp_assured = 180;  // once it has
  uint32_t icmp = 30;
};

struct SnatRule {
  uint32_t vni = 0;
  uint32_t inside_net = 0;  // host order; host bits must be zero
  uint8_t prefix = 0;       // 0..32
  uint32_t external = 0;    // the network's floating gateway address
  uint16_t port_min = 1024, port_max = 65535;
};

struct FloatRule {
  uint32_t vni = 0;
  uint32_t inside = 0;
  uint32_t external = 0;
};

struct RuleCounters {
  uint64_t egress_packets = 0, egress_bytes = 0, ingress_packets = 0, ingress_bytes = 0;
};

struct Flow {
  uint32_t vni;
  uint32_t inside, remote, external;
  uint16_t inside_port, remote_port, external_port;  // ICMP echo: the ids; remote_port 0
  uint8_t proto;
  uint8_t tcp_state;
  uint8_t fins;  // bit Dir: a FIN was seen in that direction
  bool seen_reply;
  uint64_t expires_ms;
  // TCP: the last acknowledgment number the inside sent (ack_known once it has sent one): an ingress RST
  // closes the flow only if its sequence number is near it (kRstWindow), as RFC 5961 asks.
  uint32_t ack_out = 0;
  bool ack_known = false;
};

// How far from the inside's last ACK an ingress RST's sequence number may be and still close the flow.
constexpr uint32_t kRstWindowAhead = 1u << 20, kRstWindowBehind = 1u << 16;
inline bool rst_in_window(const Flow& f, uint32_t seq) {
  return !f.ack_known || seq - f.ack_out < kRstWindowAhead || f.ack_out - seq < kRstWindowBehind;
}

struct Stats {
  uint64_t drops[kReasonCount] = {};
  uint64_t translated[2] = {}, passthrough[2] = {};  // by Dir
  uint64_t flows_created = 0, flows_expired = 0, flows_flushed = 0;
  uint32_t entries = 0, capacity = 0;
};

class NatTable {
 public:
  // `capacity` flows (1..2^24); `seed` keys the flow hash so remote peers cannot aim collisions at it.
  NatTable(uint32_t capacity, const Timeouts& t = {}, uint64_t seed = 0);

  // Control path. Throw std::invalid_argument naming the bad field (or an overlap with an existing rule).
  void add_snat(const SnatRule& r);
  // Removes the rule and flushes the flows it created; false if there was no such rule.
  bool remove_snat(uint32_t vni, uint32_t inside_net, uint8_t prefix);
  void add_float(const FloatRule& r);
  bool remove_float(uint32_t external);

  // Translates the IPv4 packet at `ip` (`len` bytes available) in place. `vni` is the network an
  // egress packet comes from (ignored for ingress). Passthrough means no rule applies (a routed
  // address, or traffic not addressed to us): forward it unchanged.
  Verdict translate(Dir d, uint32_t vni, uint8_t* ip, size_t len, uint64_t now_ms);

  // Removes flows idle past their timeout; returns how many. Call about once a second.
  uint32_t sweep(uint64_t now_ms);

  Stats stats() const;
  std::vector<Flow> flows() const;  // a snapshot, for tests and operators (allocates)
  std::vector<std::pair<SnatRule, RuleCounters>> snat_rules() const;
  std::vector<std::pair<FloatRule, RuleCounters>> float_rules() const;

 private:
  static constexpr uint32_t kNil = 0xffffffffu;
  struct Entry {
    Flow f;
    uint32_t egress_hash, ingress_hash;
    uint32_t next_free;
    bool used;
  };
  struct Slot {
    uint32_t idx, hash;
  };
  struct Snat {
    SnatRule r;
    RuleCounters c;
  };
  struct Float {
    FloatRule r;
    RuleCounters c;
  };

  // Linear-probing index of entry numbers with backward-shift deletion, at most half full.
  uint32_t probe_egress(uint32_t h, uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem,
                        uint16_t rem_port) const;
  uint32_t probe_ingress(uint32_t h, uint8_t proto, uint32_t ext, uint16_t ext_port, uint32_t rem,
                         uint16_t rem_port) const;
  void slot_insert(std::vector<Slot>& t, uint32_t h, uint32_t idx);
  void slot_erase(std::vector<Slot>& t, uint32_t h, uint32_t idx);

  uint32_t hash_egress(uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem,
                       uint16_t rem_port) const;
  uint32_t hash_ingress(uint8_t proto, uint32_t ext, uint16_t ext_port, uint32_t rem, uint16_t rem_port) const;

  uint32_t find_egress(uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem, uint16_t rem_port,
                       uint64_t now);
  uint32_t find_ingress(uint8_t proto, uint32_t ext, uint16_t ext_port, uint32_t rem, uint16_t rem_port,
                        uint64_t now);
  uint32_t create(const Snat& s, uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem,
                  uint16_t rem_port, uint64_t now, Reason* why);
  void remove(uint32_t idx);
  void touch(Entry& e, Dir d, const uint8_t* l4, uint64_t now);
  uint32_t timeout_s(const Flow& f) const;

  // `v` is translate()'s checked view of `ip` (n = v.total).
  Verdict egress(uint32_t vni, uint8_t* ip, const Ipv4View& v, uint64_t now);
  Verdict ingress(uint8_t* ip, const Ipv4View& v, uint64_t now);
  Verdict floated(Dir d, Float& fl, uint8_t* ip, size_t n);
  void count_snat(uint32_t vni, uint32_t external, Dir d, size_t bytes);
  Verdict icmp_error(Dir d, uint32_t vni, uint8_t* ip, size_t n, uint64_t now);
  Snat* snat_for(uint32_t vni, uint32_t src);
  Verdict drop(Reason r) { stats_.drops[r]++; return {Action::kDrop, r, 0}; }

  mutable std::mutex mu_;
  Timeouts t_;
  uint64_t seed_;
  std::vector<Entry> entries_;
  std::vector<Slot> egress_idx_, ingress_idx_;
  uint32_t mask_;
  uint32_t free_head_;
  Stats stats_;
  std::unordered_map<uint32_t, std::vector<Snat>> snat_;       // by VNI
  std::unordered_map<uint32_t, uint32_t> snat_external_;       // external address -> rules using it
  std::unordered_map<uint32_t, Float> floats_;                 // by external address
  std::unordered_map<uint64_t, uint32_t> float_by_inside_;     // (vni << 32 | inside) -> external
};

}  // namespace appnet::nat
