// Packet-format helpers shared by the engine threads and the codec bindings.
// Pure functions over caller-owned bytes: no allocation, no I/O. The TypeScript codecs in
// dataplane/wire/ implement the same contracts; test/ compares both byte for byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace appnet {

constexpr size_t kEthHdr = 14;
constexpr size_t kVxlanHdr = 8;
constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherArp = 0x0806;
constexpr uint8_t kVxlanFlagI = 0x08;
constexpr uint32_t kMaxVni = 0xFFFFFF;

inline uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline void wr16(uint8_t* p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
inline void wr32(uint8_t* p, uint32_t v) {
  p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff;
}

// A MAC address packed into the low 48 bits, first octet most significant.
inline uint64_t mac_key(const uint8_t* p) {
  return uint64_t(p[0]) << 40 | uint64_t(p[1]) << 32 | uint64_t(p[2]) << 24 |
         uint64_t(p[3]) << 16 | uint64_t(p[4]) << 8 | uint64_t(p[5]);
}
inline void mac_write(uint8_t* p, uint64_t k) {
  for (int i = 5; i >= 0; i--) { p[i] = k & 0xff; k >>= 8; }
}
inline bool mac_is_group(const uint8_t* p) { return p[0] & 1; }  // broadcast or multicast

// Writes the 8-byte VXLAN header for `vni` at `out`. Contract: vni <= kMaxVni.
inline void vxlan_write_header(uint8_t* out, uint32_t vni) {
  out[0] = kVxlanFlagI; out[1] = 0; out[2] = 0; out[3] = 0;
  out[4] = (vni >> 16) & 0xff; out[5] = (vni >> 8) & 0xff; out[6] = vni & 0xff; out[7] = 0;
}

enum class DecapError { kNone = 0, kShort, kFlags, kInnerShort, kInnerIpv4, kInnerArp };

// Checks a VXLAN datagram and returns its VNI; the inner frame is datagram[8..len).
// The rules (and their order) are the contract shared with dataplane/wire/vxlan.ts.
// One length-checked view of an IPv4 header (and, through l4_ports, of UDP and TCP ports), for every native reader of IPv4 from the wire or an instance
// (punt classifiers, TUN ports, the uplink, VXLAN's inner check, the port filter, NAT, GRO): version 4,
// 20 <= IHL <= total length <= the bytes there are. Ethernet padding after `total` is not part of the packet.
struct Ipv4View {
  size_t ihl;         // header bytes (20..60)
  size_t total;       // the total length field: header and payload
  uint8_t proto;
  uint32_t src, dst;  // host order
  bool first_fragment;  // fragment offset 0: the L4 header is here
  const uint8_t* l4;
  size_t l4_len;      // total - ihl
};

// Why a header did not give a view, for readers that count the two apart: fewer bytes than the header or
// the packet claims (kTruncated), or fields that contradict each other (kHeader). Checked in this order:
// 20 bytes; version and IHL >= 20; IHL <= bytes; total >= IHL; total <= bytes.
enum class Ipv4Error { kNone = 0, kTruncated, kHeader };

inline Ipv4Error ipv4_check(const uint8_t* ip, size_t avail, Ipv4View* v) {
  if (avail < 20) return Ipv4Error::kTruncated;
  size_t ihl = size_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20) return Ipv4Error::kHeader;
  if (ihl > avail) return Ipv4Error::kTruncated;
  size_t total = rd16(ip + 2);
  if (total < ihl) return Ipv4Error::kHeader;
  if (total > avail) return Ipv4Error::kTruncated;
  *v = Ipv4View{ihl, total, ip[9], rd32(ip + 12), rd32(ip + 16), (rd16(ip + 6) & 0x1fff) == 0, ip + ihl, total - ihl};
  return Ipv4Error::kNone;
}

inline bool ipv4_view(const uint8_t* ip, size_t avail, Ipv4View* v) {
  return ipv4_check(ip, avail, v) == Ipv4Error::kNone;
}

// The ports of a UDP (8-byte header) or TCP (20-byte header) segment in a first fragment, over an Ipv4View:
// false for another protocol, a later fragment, or a header the packet's total length does not hold.
struct L4Ports {
  uint16_t src, dst;
};

inline bool l4_ports(const Ipv4View& ip, L4Ports* p) {
  size_t need = ip.proto == 6 ? 20 : ip.proto == 17 ? 8 : 0;
  if (need == 0 || !ip.first_fragment || ip.l4_len < need) return false;
  *p = L4Ports{rd16(ip.l4), rd16(ip.l4 + 2)};
  return true;
}

// The packet an ICMP error quotes: the same header checks, but the quote holds only the header and the first
// bytes of the payload, so the total length (the original packet's) is not held against the bytes there are;
// `l4_len` is what the quote holds after the header.
inline bool ipv4_quote_view(const uint8_t* ip, size_t avail, Ipv4View* v) {
  if (avail < 20) return false;
  size_t ihl = size_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ihl > avail) return false;
  *v = Ipv4View{ihl, rd16(ip + 2), ip[9], rd32(ip + 12), rd32(ip + 16), (rd16(ip + 6) & 0x1fff) == 0, ip + ihl, avail - ihl};
  return true;
}

inline DecapError vxlan_decap(const uint8_t* d, size_t len, uint32_t* vni) {
  if (len < kVxlanHdr) return DecapError::kShort;
  if (d[0] != kVxlanFlagI || d[1] || d[2] || d[3] || d[7]) return DecapError::kFlags;
  *vni = uint32_t(d[4]) << 16 | uint32_t(d[5]) << 8 | d[6];
  const uint8_t* f = d + kVxlanHdr;
  size_t flen = len - kVxlanHdr;
  if (flen < kEthHdr) return DecapError::kInnerShort;
  uint16_t et = rd16(f + 12);
  if (et == kEtherIpv4) {
    Ipv4View ip;
    if (!ipv4_view(f + kEthHdr, flen - kEthHdr, &ip)) return DecapError::kInnerIpv4;
  } else if (et == kEtherArp) {
    if (flen < kEthHdr + 28) return DecapError::kInnerArp;
  }
  return DecapError::kNone;
}

// FNV-1a over the inner flow key; see dataplane/wire/flow-hash.ts for the key definition.
inline uint32_t fnv1a(uint32_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x01000193u; }
  return h;
}
inline uint32_t flow_hash(const uint8_t* f, size_t len) {
  uint32_t h = 0x811c9dc5u;
  if (len >= 34 && rd16(f + 12) == kEtherIpv4 && (f[14] >> 4) == 4) {
    size_t ihl = size_t(f[14] & 0x0f) * 4;
    if (ihl >= 20 && kEthHdr + ihl <= len) {
      h = fnv1a(h, f + 26, 8);   // source and destination address
      h = fnv1a(h, f + 23, 1);   // protocol
      uint8_t proto = f[23];
      bool first_fragment = (rd16(f + 20) & 0x1fff) == 0;
      if ((proto == 6 || proto == 17) && first_fragment && kEthHdr + ihl + 4 <= len)
        h = fnv1a(h, f + kEthHdr + ihl, 4);  // ports
      return h;
    }
  }
  return fnv1a(h, f, len >= kEthHdr ? kEthHdr : len);
}

// RFC 1071 one's-complement sum of `p` read as big-endian 16-bit words, folded to 16 bits and
// not complemented. Summed eight bytes at a time in native order: the one's-complement sum is
// byte-order independent up to a final swap (RFC 1071 2.B). Little-endian hosts only.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checksum code assumes little-endian");
inline uint16_t csum_sum(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    s += (v & 0xffffffffu) + (v >> 32);
  }
  for (; n >= 2; p += 2, n -= 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    s += v;
  }
  if (n) s += p[0];  // the odd byte is the high byte of a big-endian word: low byte natively
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t((s >> 8 | s << 8) & 0xffff);
}

// The checksum field value for `p`: the complement of its sum plus `sum` (a big-endian partial
// sum, e.g. the IPv4 pseudo-header, not yet folded).
inline uint16_t inet_checksum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  uint64_t s = uint64_t(sum) + csum_sum(p, n);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(~s);
}

// Pseudo-header sum for TCP/UDP over IPv4 (RFC 793, RFC 768), addresses read from the header.
inline uint32_t ipv4_pseudo_sum(const uint8_t* ip, uint8_t proto, size_t l4_len) {
  return uint32_t(rd16(ip + 12)) + rd16(ip + 14) + rd16(ip + 16) + rd16(ip + 18) + proto + uint32_t(l4_len);
}

}  // namespace appnet
