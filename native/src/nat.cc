// NAT and connection tracking core; the contract is in nat.h, the design in docs/nat.md.
#include "nat.h"

#include <stdexcept>
#include <string>

#include "wire.h"

namespace appnet::nat {
namespace {

constexpr uint8_t kIcmp = 1, kTcp = 6, kUdp = 17;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr uint8_t kEchoReply = 0, kEchoRequest = 8;
constexpr uint32_t kMaxProbes = 256;  // external ports tried for one new flow before giving up

bool icmp_is_error(uint8_t type) { return type == 3 || type == 11 || type == 12; }  // unreach, time exceeded, param

// A checksum field a rewrite must keep correct. A UDP checksum of 0 means "none sent" and stays 0;
// one that would become 0 is sent as 0xffff (RFC 768).
struct Sum {
  uint8_t* at = nullptr;
  bool udp = false;
};

// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for one 16-bit word changing from o to n.
void fix16(Sum s, uint16_t o, uint16_t n) {
  if (!s.at || o == n) return;
  uint16_t c = rd16(s.at);
  if (s.udp && c == 0) return;
  uint32_t x = uint32_t(uint16_t(~c)) + uint16_t(~o) + n;
  while (x >> 16) x = (x & 0xffff) + (x >> 16);
  c = uint16_t(~x);
  if (s.udp && c == 0) c = 0xffff;
  wr16(s.at, c);
}

void put16(uint8_t* field, uint16_t v, Sum a, Sum b = {}, Sum c = {}) {
  uint16_t o = rd16(field);
  fix16(a, o, v);
  fix16(b, o, v);
  fix16(c, o, v);
  wr16(field, v);
}

void put32(uint8_t* field, uint32_t v, Sum a, Sum b = {}, Sum c = {}) {
  put16(field, uint16_t(v >> 16), a, b, c);
  put16(field + 2, uint16_t(v), a, b, c);
}

// The checksum of an L4 header of `n` bytes, if the header is long enough to hold it.
Sum l4_sum(uint8_t proto, uint8_t* l4, size_t n) {
  if (proto == kTcp && n >= 18) return {l4 + 16, false};
  if (proto == kUdp && n >= 8) return {l4 + 6, true};
  if (proto == kIcmp && n >= 4) return {l4 + 2, false};
  return {};
}

size_t ihl_of(const uint8_t* ip) { return size_t(ip[0] & 0x0f) * 4; }
bool is_fragment(const uint8_t* ip) { return (rd16(ip + 6) & 0x3fff) != 0; }  // MF set or offset != 0
bool later_fragment(const uint8_t* ip) { return (rd16(ip + 6) & 0x1fff) != 0; }

// The packet quoted by the ICMP error at `icmp` (`m` bytes): its IPv4 header and at least the first 8
// bytes of its payload (all RFC 792 guarantees). Null if the quote is shorter or not IPv4.
uint8_t* quote_of(uint8_t* icmp, size_t m) {
  Ipv4View q;
  if (m < 8 || !ipv4_quote_view(icmp + 8, m - 8, &q) || q.l4_len < 8) return nullptr;
  return icmp + 8;
}

// Rewrites the quoted packet inside an ICMP error: its source (src_side) or destination address to
// `addr` and, when port >= 0, the matching port (or echo id) to `port`. Keeps the quote's IP and L4
// checksums and the ICMP checksum, which covers both, correct. The quote must come from quote_of().
void rewrite_quote(uint8_t* icmp, size_t m, bool src_side, uint32_t addr, int port) {
  uint8_t* in = icmp + 8;
  size_t iihl = ihl_of(in);
  uint8_t proto = in[9];
  uint8_t* il4 = in + iihl;
  Sum icmpc{icmp + 2}, ipc{in + 10};
  Sum l4c = later_fragment(in) ? Sum{} : l4_sum(proto, il4, m - 8 - iihl);
  uint16_t ipc0 = rd16(in + 10), l4c0 = l4c.at ? rd16(l4c.at) : 0;
  put32(in + (src_side ? 12 : 16), addr, ipc, proto == kIcmp ? Sum{} : l4c, icmpc);
  if (port >= 0) put16(proto == kIcmp ? il4 + 4 : il4 + (src_side ? 0 : 2), uint16_t(port), l4c, icmpc);
  fix16(icmpc, ipc0, rd16(in + 10));
  if (l4c.at) fix16(icmpc, l4c0, rd16(l4c.at));
}

uint64_t mix(uint64_t x) {  // murmur3's 64-bit finaliser
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

uint32_t mask_of(uint8_t prefix) { return prefix ? ~uint32_t(0) << (32 - prefix) : 0; }
uint64_t inside_key(uint32_t vni, uint32_t addr) { return uint64_t(vni) << 32 | addr; }

}  // namespace

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

// ---- translation ----

Verdict NatTable::translate(Dir d, uint32_t vni, uint8_t* ip, size_t len, uint64_t now) {
  std::lock_guard<std::mutex> g(mu_);
  Ipv4View view;
  switch (ipv4_check(ip, len, &view)) {
    case Ipv4Error::kTruncated: return drop(kTruncatedIp);
    case Ipv4Error::kHeader: return drop(kBadIpHeader);
    case Ipv4Error::kNone: break;
  }
  Verdict v = d == Dir::kEgress ? egress(vni, ip, view.total, now) : ingress(ip, view.total, now);
  if (v.action == Action::kTranslated) stats_.translated[int(d)]++;
  if (v.action == Action::kPassthrough) stats_.passthrough[int(d)]++;
  return v;
}

Verdict NatTable::egress(uint32_t vni, uint8_t* ip, size_t n, uint64_t now) {
  uint32_t src = rd32(ip + 12), dst = rd32(ip + 16);
  auto fi = float_by_inside_.find(inside_key(vni, src));
  if (fi != float_by_inside_.end()) return floated(Dir::kEgress, floats_.at(fi->second), ip, n);
  Snat* s = snat_for(vni, src);
  if (!s) return {Action::kPassthrough, kNone, vni};
  if (is_fragment(ip)) return drop(kFragment);
  uint8_t proto = ip[9];
  uint8_t* l4 = ip + ihl_of(ip);
  size_t m = n - ihl_of(ip);
  uint16_t in_port = 0, rem_port = 0;
  if (proto == kTcp || proto == kUdp) {
    Ipv4View v;
    L4Ports ports;
    if (!ipv4_view(ip, n, &v) || !l4_ports(v, &ports)) return drop(kTruncatedL4);
    in_port = ports.src;
    rem_port = ports.dst;
  } else if (proto == kIcmp) {
    if (m < 8) return drop(kTruncatedL4);
    if (icmp_is_error(l4[0])) return icmp_error(Dir::kEgress, vni, ip, n, now);
    if (l4[0] != kEchoRequest) return drop(kUnsupported);
    in_port = rd16(l4 + 4);
  } else {
    return drop(kUnsupported);
  }
  uint32_t idx = find_egress(vni, proto, src, in_port, dst, rem_port, now);
  if (idx == kNil) {
    if (proto == kTcp && ((l4[13] & kRst) || !(l4[13] & (kSyn | kAck)))) return drop(kInvalidTcp);
    Reason why = kNone;
    idx = create(*s, vni, proto, src, in_port, dst, rem_port, now, &why);
    if (idx == kNil) return drop(why);
  }
  Entry& e = entries_[idx];
  touch(e, Dir::kEgress, l4, now);
  Sum l4c = l4_sum(proto, l4, m);
  put32(ip + 12, e.f.external, Sum{ip + 10}, proto == kIcmp ? Sum{} : l4c);
  put16(proto == kIcmp ? l4 + 4 : l4, e.f.external_port, l4c);
  s->c.egress_packets++;
  s->c.egress_bytes += n;
  return {Action::kTranslated, kNone, vni};
}

Verdict NatTable::ingress(uint8_t* ip, size_t n, uint64_t now) {
  uint32_t src = rd32(ip + 12), dst = rd32(ip + 16);
  auto fi = floats_.find(dst);
  if (fi != floats_.end()) return floated(Dir::kIngress, fi->second, ip, n);
  if (!snat_external_.count(dst)) return {Action::kPassthrough, kNone, 0};
  if (is_fragment(ip)) return drop(kFragment);
  uint8_t proto = ip[9];
  uint8_t* l4 = ip + ihl_of(ip);
  size_t m = n - ihl_of(ip);
  uint16_t ext_port = 0, rem_port = 0;
  if (proto == kTcp || proto == kUdp) {
    Ipv4View v;
    L4Ports ports;
    if (!ipv4_view(ip, n, &v) || !l4_ports(v, &ports)) return drop(kTruncatedL4);
    rem_port = ports.src;
    ext_port = ports.dst;
  } else if (proto == kIcmp) {
    if (m < 8) return drop(kTruncatedL4);
    if (icmp_is_error(l4[0])) return icmp_error(Dir::kIngress, 0, ip, n, now);
    if (l4[0] != kEchoReply) return drop(kNoFlow);
    ext_port = rd16(l4 + 4);
  } else {
    return drop(kUnsupported);
  }
  uint32_t idx = find_ingress(proto, dst, ext_port, src, rem_port, now);
  if (idx == kNil) return drop(kNoFlow);
  Entry& e = entries_[idx];
  touch(e, Dir::kIngress, l4, now);
  Sum l4c = l4_sum(proto, l4, m);
  put32(ip + 16, e.f.inside, Sum{ip + 10}, proto == kIcmp ? Sum{} : l4c);
  put16(proto == kIcmp ? l4 + 4 : l4 + 2, e.f.inside_port, l4c);
  count_snat(e.f.vni, dst, Dir::kIngress, n);
  return {Action::kTranslated, kNone, e.f.vni};
}

// An ICMP error about a tracked flow: the quoted packet is one of the flow's, as the far side saw it.
// The outer address and the quote's matching address and port are translated; timers are not
// refreshed (an error is no sign of life, as in Linux).
Verdict NatTable::icmp_error(Dir d, uint32_t vni, uint8_t* ip, size_t n, uint64_t now) {
  uint8_t* icmp = ip + ihl_of(ip);
  size_t m = n - ihl_of(ip);
  uint8_t* in = quote_of(icmp, m);
  if (!in) return drop(kTruncatedL4);
  uint8_t proto = in[9];
  uint8_t* il4 = in + ihl_of(in);
  if (later_fragment(in)) return drop(kNoFlow);
  uint32_t isrc = rd32(in + 12), idst = rd32(in + 16);
  uint16_t sport, dport;
  if (proto == kTcp || proto == kUdp) {
    sport = rd16(il4);
    dport = rd16(il4 + 2);
  } else if (proto == kIcmp && (il4[0] == kEchoRequest || il4[0] == kEchoReply)) {
    sport = dport = rd16(il4 + 4);  // the id stands for the inside port on both sides
  } else {
    return drop(kNoFlow);
  }
  uint32_t idx;
  if (d == Dir::kIngress) {  // quote: external:ext_port -> remote:rem_port, as we sent it
    if (isrc != rd32(ip + 16)) return drop(kNoFlow);
    idx = find_ingress(proto, isrc, sport, idst, proto == kIcmp ? 0 : dport, now);
  } else {  // quote: remote:rem_port -> inside:in_port, as we delivered it
    idx = find_egress(vni, proto, idst, dport, isrc, proto == kIcmp ? 0 : sport, now);
  }
  if (idx == kNil) return drop(kNoFlow);
  const Flow& f = entries_[idx].f;
  bool in_bound = d == Dir::kIngress;
  put32(ip + (in_bound ? 16 : 12), in_bound ? f.inside : f.external, Sum{ip + 10});
  rewrite_quote(icmp, m, in_bound, in_bound ? f.inside : f.external,
                in_bound ? f.inside_port : f.external_port);
  count_snat(f.vni, f.external, d, n);
  return {Action::kTranslated, kNone, f.vni};
}

// 1:1 NAT: only the address changes, so fragments translate too (the first carries the L4 checksum,
// which covers the pseudo-header). ICMP errors get their quote's address translated when it has one.
Verdict NatTable::floated(Dir d, Float& fl, uint8_t* ip, size_t n) {
  bool out = d == Dir::kEgress;
  uint32_t to = out ? fl.r.external : fl.r.inside;
  uint8_t proto = ip[9];
  uint8_t* l4 = ip + ihl_of(ip);
  size_t m = n - ihl_of(ip);
  Sum l4c{};
  if (!later_fragment(ip)) {
    if ((proto == kTcp && m < 18) || (proto == kUdp && m < 8) || (proto == kIcmp && m < 8))
      return drop(kTruncatedL4);
    if (proto == kTcp || proto == kUdp) l4c = l4_sum(proto, l4, m);
    if (proto == kIcmp && icmp_is_error(l4[0]) && !is_fragment(ip)) {
      uint8_t* in = quote_of(l4, m);
      uint32_t from = out ? fl.r.inside : fl.r.external;
      if (in && rd32(in + (out ? 16 : 12)) == from) rewrite_quote(l4, m, !out, to, -1);
    }
  }
  put32(ip + (out ? 12 : 16), to, Sum{ip + 10}, l4c);
  if (out) fl.c.egress_packets++, fl.c.egress_bytes += n;
  else fl.c.ingress_packets++, fl.c.ingress_bytes += n;
  return {Action::kTranslated, kNone, fl.r.vni};
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
