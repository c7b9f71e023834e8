// NAT translation: a packet through the table (egress, ingress, ICMP errors quoting a flow, 1:1 addresses), with
// every checksum it touches kept correct incrementally (RFC 1624). The table itself is in nat.cc.
#include "nat.h"
#include "nat_internal.h"
#include "wire.h"

namespace appnet::nat {
using namespace internal;
namespace {

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

}  // namespace

// ---- translation ----

Verdict NatTable::translate(Dir d, uint32_t vni, uint8_t* ip, size_t len, uint64_t now) {
  std::lock_guard<std::mutex> g(mu_);
  Ipv4View view;
  switch (ipv4_check(ip, len, &view)) {
    case Ipv4Error::kTruncated: return drop(kTruncatedIp);
    case Ipv4Error::kHeader: return drop(kBadIpHeader);
    case Ipv4Error::kNone: break;
  }
  Verdict v = d == Dir::kEgress ? egress(vni, ip, view, now) : ingress(ip, view, now);
  if (v.action == Action::kTranslated) stats_.translated[int(d)]++;
  if (v.action == Action::kPassthrough) stats_.passthrough[int(d)]++;
  return v;
}

Verdict NatTable::egress(uint32_t vni, uint8_t* ip, const Ipv4View& v, uint64_t now) {
  size_t n = v.total;
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
    L4Ports ports;
    if (!l4_ports(v, &ports)) return drop(kTruncatedL4);
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

Verdict NatTable::ingress(uint8_t* ip, const Ipv4View& v, uint64_t now) {
  size_t n = v.total;
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
    L4Ports ports;
    if (!l4_ports(v, &ports)) return drop(kTruncatedL4);
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

}  // namespace appnet::nat
