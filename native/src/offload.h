// Segmentation offload, done in software: what a NIC would do with a TSO super-frame or a
// frame whose checksum was left partial. TAP ports are opened with IFF_VNET_HDR and
// TUN_F_CSUM | TUN_F_TSO4, so the instance's TCP stack hands us up to 64 KiB per read() and we
// cut it into MSS-sized frames here, instead of paying a read() per frame.
// Pure functions over caller-owned buffers; dataplane/wire/tso.ts is the TypeScript twin.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "wire.h"

namespace appnet {

// struct virtio_net_hdr (legacy, 10 bytes, host byte order: TUN devices default to native).
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VnetHdr) == 10, "virtio_net_hdr is 10 bytes");
constexpr uint8_t kVnetNeedsCsum = 1;
constexpr uint8_t kGsoNone = 0;
constexpr uint8_t kGsoTcpv4 = 1;
constexpr uint8_t kGsoUdpL4 = 5;  // VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation (USO), Linux 6.2 and later

// Completes a partial checksum: the field at csum_start + csum_offset holds the pseudo-header
// sum; the checksum covers [csum_start, len). False if the offsets do not fit the frame.
inline bool finish_checksum(uint8_t* f, size_t len, size_t start, size_t off) {
  if (start + off + 2 > len) return false;
  uint16_t c = inet_checksum(f + start, len - start);
  if (c == 0 && off == 6) c = 0xffff;  // UDP: a computed zero is sent as all ones
  wr16(f + start + off, c);
  return true;
}

// A TCP/IPv4 super-frame (Ethernet + IPv4 + TCP + payload) to be cut into MSS-sized segments.
struct Tcp4Gso {
  const uint8_t* f;
  size_t ihl, thl, hlen;  // IPv4 header, TCP header, all headers including Ethernet
  size_t payload;         // bytes after the headers
  size_t mss;
  size_t count;           // segments
};

// The smallest segment size a super-frame may ask for: Linux's TCP_MIN_MSS. A smaller gso_size (which no TCP
// stack sends, but a guest driver can write) would cut one 64 KiB read into tens of thousands of segments,
// each switched and sent: the fuzzer found mss 1 stalling the TX thread for seconds per read.
constexpr size_t kMinGsoMss = 88;

// Parses a super-frame; false if it is not TCP over IPv4 with sane headers and an mss of at least kMinGsoMss.
inline bool tcp4_gso_parse(const uint8_t* f, size_t len, size_t mss, Tcp4Gso* g) {
  if (mss < kMinGsoMss || len < kEthHdr + 40 || rd16(f + 12) != kEtherIpv4) return false;
  const uint8_t* ip = f + kEthHdr;
  size_t ihl = size_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6 || kEthHdr + ihl + 20 > len) return false;
  size_t thl = size_t(ip[ihl + 12] >> 4) * 4;
  if (thl < 20 || kEthHdr + ihl + thl > len) return false;
  g->f = f;
  g->ihl = ihl;
  g->thl = thl;
  g->hlen = kEthHdr + ihl + thl;
  g->payload = len - g->hlen;
  g->mss = mss;
  g->count = g->payload == 0 ? 1 : (g->payload + mss - 1) / mss;
  return true;
}

// Writes segment `i` (< count) to `out`, which has room for hlen + mss bytes; returns its length.
// Each segment gets its own IPv4 length, id (+i) and checksum, and its TCP sequence number;
// FIN and PSH stay on the last segment only, CWR on the first only; full TCP checksum.
inline size_t tcp4_gso_segment(const Tcp4Gso& g, size_t i, uint8_t* out) {
  size_t off = i * g.mss;
  size_t chunk = g.payload - off < g.mss ? g.payload - off : g.mss;
  std::memcpy(out, g.f, g.hlen);
  std::memcpy(out + g.hlen, g.f + g.hlen + off, chunk);
  uint8_t* ip = out + kEthHdr;
  const uint8_t* oip = g.f + kEthHdr;
  wr16(ip + 2, uint16_t(g.ihl + g.thl + chunk));
  wr16(ip + 4, uint16_t(rd16(oip + 4) + i));
  wr16(ip + 10, 0);
  wr16(ip + 10, inet_checksum(ip, g.ihl));
  uint8_t* tcp = ip + g.ihl;
  wr32(tcp + 4, uint32_t(rd32(oip + g.ihl + 4) + off));
  uint8_t flags = tcp[13];
  if (i + 1 < g.count) flags &= uint8_t(~0x09);  // FIN, PSH
  if (i > 0) flags &= uint8_t(~0x80);            // CWR
  tcp[13] = flags;
  wr16(tcp + 16, 0);
  size_t l4 = g.thl + chunk;
  wr16(tcp + 16, inet_checksum(tcp, l4, ipv4_pseudo_sum(ip, 6, l4)));
  return g.hlen + chunk;
}

// What a partial TCP/IPv4 checksum (NEEDS_CSUM) must start from: the pseudo-header sum over the whole
// TCP length, folded and not complemented. After an address rewrite (NAT) it is recomputed, not patched:
// RFC 1624's update is for a complete checksum, and the ports it would fold in are not in this sum.
// The same for UDP (proto 17, checksum at offset 6 of its header).
inline void l4_set_partial_csum(uint8_t* ip, size_t ihl, size_t total, uint8_t proto) {
  uint32_t s = ipv4_pseudo_sum(ip, proto, total - ihl);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  wr16(ip + ihl + (proto == 17 ? 6 : 16), uint16_t(s));
}

inline void tcp4_set_partial_csum(uint8_t* ip, size_t ihl, size_t total) { l4_set_partial_csum(ip, ihl, total, 6); }

// The virtio_net_hdr that hands a TCP/IPv4 super-frame on whole, its partial checksum set: `l3` is where
// its IPv4 header starts in what is written (kEthHdr into a TAP, 0 into a TUN).
inline VnetHdr tcp4_gso_vnet_hdr(size_t l3, size_t ihl, size_t thl, size_t mss) {
  VnetHdr h{};
  h.flags = kVnetNeedsCsum;
  h.gso_type = kGsoTcpv4;
  h.hdr_len = uint16_t(l3 + ihl + thl);
  h.gso_size = uint16_t(mss);
  h.csum_start = uint16_t(l3 + ihl);
  h.csum_offset = 16;
  return h;
}

inline VnetHdr tcp4_gso_vnet_hdr(const Tcp4Gso& g, size_t l3) { return tcp4_gso_vnet_hdr(l3, g.ihl, g.thl, g.mss); }

// The virtio_net_hdr of a UDP/IPv4 super-frame: datagrams of `mss` payload bytes each (the last may be
// shorter), its partial checksum set; the receiving kernel cuts it (udp_rcv_segment) into the datagrams.
inline VnetHdr udp4_gso_vnet_hdr(size_t l3, size_t ihl, size_t mss) {
  VnetHdr h{};
  h.flags = kVnetNeedsCsum;
  h.gso_type = kGsoUdpL4;
  h.hdr_len = uint16_t(l3 + ihl + 8);
  h.gso_size = uint16_t(mss);
  h.csum_start = uint16_t(l3 + ihl);
  h.csum_offset = 6;
  return h;
}

// How many datagrams a UDP/IPv4 super-frame (Ethernet + 20-byte IPv4 + UDP) of `len` bytes holds.
inline size_t udp4_gso_count(size_t len, size_t mss) {
  size_t payload = len > kEthHdr + 28 ? len - kEthHdr - 28 : 0;
  return mss == 0 || payload == 0 ? 1 : (payload + mss - 1) / mss;
}

// Writes datagram `i` (< udp4_gso_count) of such a super-frame to `out` (room for 42 + mss bytes), as the
// kernel's UDP segmentation makes it: the headers with its own IPv4 total length, id (+i) and header
// checksum, UDP length, and a full UDP checksum. Returns its length.
inline size_t udp4_gso_segment(const uint8_t* f, size_t len, size_t mss, size_t i, uint8_t* out) {
  constexpr size_t hlen = kEthHdr + 28;
  size_t payload = len - hlen;
  size_t off = i * mss;
  size_t chunk = payload - off < mss ? payload - off : mss;
  std::memcpy(out, f, hlen);
  std::memcpy(out + hlen, f + hlen + off, chunk);
  uint8_t* ip = out + kEthHdr;
  wr16(ip + 2, uint16_t(28 + chunk));
  wr16(ip + 4, uint16_t(rd16(f + kEthHdr + 4) + i));
  wr16(ip + 10, 0);
  wr16(ip + 10, inet_checksum(ip, 20));
  uint8_t* udp = ip + 20;
  wr16(udp + 4, uint16_t(8 + chunk));
  wr16(udp + 6, 0);
  uint16_t c = inet_checksum(udp, 8 + chunk, ipv4_pseudo_sum(ip, 17, 8 + chunk));
  wr16(udp + 6, c == 0 ? 0xffff : c);
  return hlen + chunk;
}

}  // namespace appnet
