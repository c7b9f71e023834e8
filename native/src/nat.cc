// NAT and connection tracking core: the table, its rules, the flow index, flow state and snapshots; the contract
// is in nat.h, the design in docs/nat.md, the translation of packets in nat_translate.cc.
#include "nat.h"

#include <stdexcept>
#include <string>

#include "nat_internal.h"
#include "wire.h"

namespace appnet::nat {
using namespace internal;

const char* reason_name(int r) {
  static const char* names[kReasonCount] = {"none", "truncated_ip", "bad_ip_header", "truncated_l4", "fragment",
                                            "unsupported", "no_flow", "conntrack_full", "ports_exhausted",
                                            "invalid_tcp"};
  return r >= 0 && r < kReasonCount ? names[r] : "?";
}

const char* tcp_state_name(int s) {
  static const char* names[kTcpStateCount] = {"none", "syn_sent", "syn_recv", "established",
                                              "fin_wait", "last_ack", "time_wait", "close"};
  return s >= 0 && s < kTcpStateCount ? names[s] : "?";
}

NatTable::NatTable(uint32_t capacity, const Timeouts& t, uint64_t seed) : t_(t), seed_(seed) {
  if (capacity < 1 || capacity > (1u << 24)) throw std::invalid_argument("capacity must be in 1..16777216 flows");
  uint32_t slots = 2;
  while (slots < 2 * capacity) slots <<= 1;  // at most half full: probes stay short, an empty slot always exists
  mask_ = slots - 1;
  entries_.resize(capacity);
  egress_idx_.assign(slots, Slot{kNil, 0});
  ingress_idx_.assign(slots, Slot{kNil, 0});
  for (uint32_t i = 0; i < capacity; i++) entries_[i].next_free = i + 1 < capacity ? i + 1 : kNil;
  free_head_ = 0;
  stats_.capacity = capacity;
}

// ---- flow index ----

uint32_t NatTable::hash_egress(uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem,
                               uint16_t rem_port) const {
  uint64_t h = mix(seed_ ^ (uint64_t(vni) << 8 | proto));
  h = mix(h ^ (uint64_t(in) << 32 | rem));
  return uint32_t(mix(h ^ (uint64_t(in_port) << 16 | rem_port)));
}

uint32_t NatTable::hash_ingress(uint8_t proto, uint32_t ext, uint16_t ext_port, uint32_t rem,
                                uint16_t rem_port) const {
  uint64_t h = mix(~seed_ ^ proto);
  h = mix(h ^ (uint64_t(ext) << 32 | rem));
  return uint32_t(mix(h ^ (uint64_t(ext_port) << 16 | rem_port)));
}

uint32_t NatTable::probe_egress(uint32_t h, uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port,
                                uint32_t rem, uint16_t rem_port) const {
  for (uint32_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = egress_idx_[i];
    if (s.idx == kNil) return kNil;
    if (s.hash != h) continue;
    const Flow& f = entries_[s.idx].f;
    if (f.vni == vni && f.proto == proto && f.inside == in && f.inside_port == in_port && f.remote == rem &&
        f.remote_port == rem_port)
      return s.idx;
  }
}

uint32_t NatTable::probe_ingress(uint32_t h, uint8_t proto, uint32_t ext, uint16_t ext_port, uint32_t rem,
                                 uint16_t rem_port) const {
  for (uint32_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = ingress_idx_[i];
    if (s.idx == kNil) return kNil;
    if (s.hash != h) continue;
    const Flow& f = entries_[s.idx].f;
    if (f.proto == proto && f.external == ext && f.external_port == ext_port && f.remote == rem &&
        f.remote_port == rem_port)
      return s.idx;
  }
}

void NatTable::slot_insert(std::vector<Slot>& t, uint32_t h, uint32_t idx) {
  uint32_t i = h & mask_;
  while (t[i].idx != kNil) i = (i + 1) & mask_;
  t[i] = Slot{idx, h};
}

// Backward-shift deletion (Knuth 6.4 algorithm R): no tombstones, so probe lengths never degrade.
void NatTable::slot_erase(std::vector<Slot>& t, uint32_t h, uint32_t idx) {
  uint32_t i = h & mask_;
  while (t[i].idx != idx) i = (i + 1) & mask_;
  for (uint32_t j = (i + 1) & mask_; t[j].idx != kNil; j = (j + 1) & mask_) {
    uint32_t home = t[j].hash & mask_;
    // Move t[j] into the hole at i unless its home lies cyclically in (i, j].
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      t[i] = t[j];
      i = j;
    }
  }
  t[i] = Slot{kNil, 0};
}

uint32_t NatTable::find_egress(uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem,
                               uint16_t rem_port, uint64_t now) {
  uint32_t idx = probe_egress(hash_egress(vni, proto, in, in_port, rem, rem_port), vni, proto, in, in_port, rem,
                              rem_port);
  if (idx != kNil && now >= entries_[idx].f.expires_ms) {  // idle past its timeout: gone, even if not swept yet
    remove(idx);
    stats_.flows_expired++;
    return kNil;
  }
  return idx;
}

uint32_t NatTable::find_ingress(uint8_t proto, uint32_t ext, uint16_t ext_port, uint32_t rem, uint16_t rem_port,
                                uint64_t now) {
  uint32_t idx = probe_ingress(hash_ingress(proto, ext, ext_port, rem, rem_port), proto, ext, ext_port, rem,
                               rem_port);
  if (idx != kNil && now >= entries_[idx].f.expires_ms) {
    remove(idx);
    stats_.flows_expired++;
    return kNil;
  }
  return idx;
}

uint32_t NatTable::create(const Snat& s, uint32_t vni, uint8_t proto, uint32_t in, uint16_t in_port, uint32_t rem,
                          uint16_t rem_port, uint64_t now, Reason* why) {
  if (free_head_ == kNil) {
    *why = kConntrackFull;
    return kNil;
  }
  // Keep the inside port when it is free towards this remote endpoint (most flows, and what RFC 4787
  // calls port preservation); otherwise probe from a point derived from the flow, so retries of the
  // same flow land on the same port.
  const SnatRule& r = s.r;
  uint32_t range = uint32_t(r.port_max) - r.port_min + 1;
  auto is_free = [&](uint16_t p) { return find_ingress(proto, r.external, p, rem, rem_port, now) == kNil; };
  int32_t port = -1;
  if (in_port >= r.port_min && in_port <= r.port_max && is_free(in_port)) {
    port = in_port;
  } else {
    uint32_t start = uint32_t(mix(seed_ ^ (uint64_t(in) << 32 | rem) ^ (uint64_t(in_port) << 48 | rem_port)) % range);
    uint32_t tries = range < kMaxProbes ? range : kMaxProbes;
    for (uint32_t i = 0; i < tries && port < 0; i++) {
      uint16_t p = uint16_t(r.port_min + (start + i) % range);
      if (is_free(p)) port = p;
    }
  }
  if (port < 0) {
    *why = kPortsExhausted;
    return kNil;
  }
  uint32_t idx = free_head_;
  Entry& e = entries_[idx];
  free_head_ = e.next_free;
  e.used = true;
  e.f = Flow{vni, in, rem, r.external, in_port, rem_port, uint16_t(port), proto, kTcpNone, 0, false, now, 0, false};
  e.egress_hash = hash_egress(vni, proto, in, in_port, rem, rem_port);
  e.ingress_hash = hash_ingress(proto, r.external, uint16_t(port), rem, rem_port);
  slot_insert(egress_idx_, e.egress_hash, idx);
  slot_insert(ingress_idx_, e.ingress_hash, idx);
  stats_.entries++;
  stats_.flows_created++;
  return idx;
}

void NatTable::remove(uint32_t idx) {
  Entry& e = entries_[idx];
  slot_erase(egress_idx_, e.egress_hash, idx);
  slot_erase(ingress_idx_, e.ingress_hash, idx);
  e.used = false;
  e.next_free = free_head_;
  free_head_ = idx;
  stats_.entries--;
}

uint32_t NatTable::sweep(uint64_t now) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t n = 0;
  for (uint32_t i = 0; i < entries_.size(); i++) {
    if (entries_[i].used && now >= entries_[i].f.expires_ms) {
      remove(i);
      n++;
    }
  }
  stats_.flows_expired += n;
  return n;
}

// ---- flow state ----

uint32_t NatTable::timeout_s(const Flow& f) const {
  switch (f.proto) {
    case kUdp: return f.seen_reply ? t_.udp_assured : t_.udp;
    case kIcmp: return t_.icmp;
    default: break;
  }
  switch (f.tcp_state) {
    case kTcpSynSent: return t_.tcp_syn_sent;
    case kTcpSynRecv: return t_.tcp_syn_recv;
    case kTcpEstablished: return t_.tcp_established;
    case kTcpFinWait: return t_.tcp_fin_wait;
    case kTcpLastAck: return t_.tcp_last_ack;
    case kTcpTimeWait: return t_.tcp_time_wait;
    default: return t_.tcp_close;
  }
}

// Linux's TCP conntrack transitions, minus its window tracking: SYN -> SYN/ACK -> ACK establishes;
// the first FIN starts closing, the second waits for the last ACK, which leads to TIME_WAIT; RST
// closes at once, but from outside only with a sequence number near the inside's last ACK (a blind
// RST cannot end a flow). A new SYN from inside reopens a closed flow (port reuse).
void NatTable::touch(Entry& e, Dir d, const uint8_t* l4, uint64_t now) {
  Flow& f = e.f;
  if (d == Dir::kIngress) f.seen_reply = true;
  if (f.proto == kTcp) {
    uint8_t fl = l4[13];
    uint8_t& s = f.tcp_state;
    if (d == Dir::kEgress && (fl & kAck)) {
      f.ack_out = rd32(l4 + 8);
      f.ack_known = true;
    }
    if (fl & kRst) {
      if (d == Dir::kEgress || rst_in_window(f, rd32(l4 + 4))) s = kTcpClose;
    } else if ((fl & kSyn) && !(fl & kAck)) {
      if (d == Dir::kEgress && (s == kTcpNone || s == kTcpTimeWait || s == kTcpClose)) {
        s = kTcpSynSent;
        f.fins = 0;
      }
    } else if (fl & kSyn) {
      if (d == Dir::kIngress && s == kTcpSynSent) s = kTcpSynRecv;
    } else if (fl & kFin) {
      f.fins |= uint8_t(1u << int(d));
      uint8_t next = f.fins == 3 ? kTcpLastAck : kTcpFinWait;
      if (s < next) s = next;
    } else if (fl & kAck) {
      if (s == kTcpNone) s = kTcpEstablished;  // picked up mid-stream (after a restart), as Linux does
      else if (s == kTcpSynRecv && d == Dir::kEgress) s = kTcpEstablished;
      else if (s == kTcpLastAck) s = kTcpTimeWait;
    }
  }
  f.expires_ms = now + uint64_t(timeout_s(f)) * 1000;
}

// ---- rules ----

void NatTable::add_snat(const SnatRule& r) {
  if (r.vni > kMaxVni) throw std::invalid_argument("snat vni " + std::to_string(r.vni) + " exceeds 24 bits");
  if (r.prefix > 32) throw std::invalid_argument("snat prefix " + std::to_string(r.prefix) + " is not in 0..32");
  if (r.inside_net & ~mask_of(r.prefix)) throw std::invalid_argument("snat inside network has host bits set");
  if (r.external == 0) throw std::invalid_argument("snat external address must not be 0.0.0.0");
  if (r.port_min == 0 || r.port_min > r.port_max)
    throw std::invalid_argument("snat port range " + std::to_string(r.port_min) + ".." + std::to_string(r.port_max) +
                                " must be non-empty and start at 1 or above");
  std::lock_guard<std::mutex> g(mu_);
  if (floats_.count(r.external)) throw std::invalid_argument("snat external address is a floating address");
  auto& list = snat_[r.vni];
  for (const Snat& s : list)
    if (s.r.inside_net == r.inside_net && s.r.prefix == r.prefix)
      throw std::invalid_argument("snat rule for this vni and inside network exists; remove it first");
  list.push_back(Snat{r, {}});
  snat_external_[r.external]++;
}

bool NatTable::remove_snat(uint32_t vni, uint32_t inside_net, uint8_t prefix) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = snat_.find(vni);
  if (it == snat_.end()) return false;
  auto& list = it->second;
  for (size_t i = 0; i < list.size(); i++) {
    if (list[i].r.inside_net != inside_net || list[i].r.prefix != prefix) continue;
    uint32_t ext = list[i].r.external, m = mask_of(prefix);
    for (uint32_t k = 0; k < entries_.size(); k++) {
      const Flow& f = entries_[k].f;
      if (entries_[k].used && f.vni == vni && f.external == ext && (f.inside & m) == inside_net) {
        remove(k);
        stats_.flows_flushed++;
      }
    }
    list.erase(list.begin() + long(i));
    if (list.empty()) snat_.erase(it);
    if (--snat_external_[ext] == 0) snat_external_.erase(ext);
    return true;
  }
  return false;
}

void NatTable::add_float(const FloatRule& r) {
  if (r.vni > kMaxVni) throw std::invalid_argument("float vni " + std::to_string(r.vni) + " exceeds 24 bits");
  if (r.external == 0 || r.inside == 0) throw std::invalid_argument("float addresses must not be 0.0.0.0");
  std::lock_guard<std::mutex> g(mu_);
  if (floats_.count(r.external) || snat_external_.count(r.external))
    throw std::invalid_argument("float external address is already in use by a float or a snat rule");
  if (float_by_inside_.count(inside_key(r.vni, r.inside)))
    throw std::invalid_argument("float inside address is already floated on this vni");
  floats_[r.external] = Float{r, {}};
  float_by_inside_[inside_key(r.vni, r.inside)] = r.external;
}

bool NatTable::remove_float(uint32_t external) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = floats_.find(external);
  if (it == floats_.end()) return false;
  float_by_inside_.erase(inside_key(it->second.r.vni, it->second.r.inside));
  floats_.erase(it);
  return true;
}

NatTable::Snat* NatTable::snat_for(uint32_t vni, uint32_t src) {
  auto it = snat_.find(vni);
  if (it == snat_.end()) return nullptr;
  Snat* best = nullptr;
  for (Snat& s : it->second)
    if ((src & mask_of(s.r.prefix)) == s.r.inside_net && (!best || s.r.prefix > best->r.prefix)) best = &s;
  return best;
}

void NatTable::count_snat(uint32_t vni, uint32_t external, Dir d, size_t bytes) {
  auto it = snat_.find(vni);
  if (it == snat_.end()) return;
  for (Snat& s : it->second) {
    if (s.r.external != external) continue;
    if (d == Dir::kEgress) s.c.egress_packets++, s.c.egress_bytes += bytes;
    else s.c.ingress_packets++, s.c.ingress_bytes += bytes;
    return;
  }
}

// ---- snapshots ----

Stats NatTable::stats() const {
  std::lock_guard<std::mutex> g(mu_);
  return stats_;
}

std::vector<Flow> NatTable::flows() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<Flow> out;
  for (const Entry& e : entries_)
    if (e.used) out.push_back(e.f);
  return out;
}

std::vector<std::pair<SnatRule, RuleCounters>> NatTable::snat_rules() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::pair<SnatRule, RuleCounters>> out;
  for (const auto& [vni, list] : snat_)
    for (const Snat& s : list) out.emplace_back(s.r, s.c);
  return out;
}

std::vector<std::pair<FloatRule, RuleCounters>> NatTable::float_rules() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::pair<FloatRule, RuleCounters>> out;
  for (const auto& [ext, f] : floats_) out.emplace_back(f.r, f.c);
  return out;
}

}  // namespace appnet::nat
