// Receive-side coalescing (GRO), done in software: the mirror image of offload.h. Consecutive
// TCP/IPv4 segments of one flow, on their way into a TAP port opened with IFF_VNET_HDR, are merged
// into one super-frame written with a virtio_net_hdr (GSO TCPv4, partial checksum): the
// instance's kernel then takes ~45 segments in one write() and one trip up its stack. Consecutive
// UDP/IPv4 datagrams of one flow and one size are merged the same way (GSO UDP_L4, Linux 6.2+): the
// kernel cuts the super-frame back into the datagrams (udp_rcv_segment) when it reaches the socket.
//
// The rules follow what Linux's tcp_gro_receive and wireguard-go's tcpGRO accept, narrowed to
// what a bulk TCP sender produces (and nothing that would change what the receiver's TCP sees):
//  - a segment may be merged at all (gro_candidate): Ethernet + IPv4 without options, not a
//    fragment, IP total length == frame length (no padding), TCP flags ACK or ACK|PSH, a
//    payload, and valid IPv4 header and TCP checksums: the super-frame goes up with its checksum
//    marked partial, which the receiving kernel trusts, so a corrupt segment must never be in one;
//  - it may follow the super-frame so far (GroFrame::check): same Ethernet header, protocol,
//    addresses and ports; same TOS, TTL and IP flags, and without DF an IP id one past the previous segment's
//    (so resegmentation recreates it); same ack, window, TCP header length and option bytes
//    (timestamps included, as Linux does); seq right after the last byte; no PSH on the last
//    segment so far, which ends a super-frame; every segment but the last exactly gso_size (the
//    first segment's payload) and the last no larger; at most 65535 IP bytes in all.
//  - UDP: the same Ethernet and IPv4 rules, a UDP length equal to the IP payload's, a payload, and a
//    checksum that is not zero (a sender that sent none must not receive one) and verifies; a
//    datagram follows when flow and IP fields match, it is no larger than the first, none before it
//    was shorter, and the super-frame stays within 65535 IP bytes and kGroUdpMaxSegs datagrams (the
//    kernel refuses more than UDP_MAX_SEGMENTS; 64 is the smallest value it has had).
// Pure functions and a class over caller-owned buffers; dataplane/wire/gro.ts is the TypeScript
// twin, and test/25-gro-merge.test.ts holds them byte-identical.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "offload.h"
#include "wire.h"

namespace appnet {

// Why a segment is not, or not any more, coalesced. Names are shared with the TypeScript twin.
enum class GroReject : uint8_t {
  kNone = 0,
  // The segment cannot be in a super-frame (gro_candidate).
  kNotIpv4,      // not an Ethernet + IPv4 frame
  kIpOptions,    // IPv4 header longer than 20 bytes
  kFragment,     // MF set or a fragment offset
  kNotTcpUdp,    // neither TCP nor UDP
  kBadLength,    // IP total length is not the frame's, or the TCP header does not fit
  kTcpFlags,     // anything but ACK or ACK|PSH (SYN, FIN, RST, URG, CWR, ECE)
  kNoPayload,
  kBadChecksum,  // IPv4 header or TCP checksum does not verify
  // The segment cannot follow the super-frame so far (GroFrame::check).
  kFlow,         // Ethernet header, addresses or ports differ
  kIpFields,     // TOS, TTL or IP flags differ, or (without DF) the IP id does not follow
  kTcpHeader,    // ack, window, header length or options differ
  kSeq,          // not the next byte in sequence
  kPshEnded,     // the last segment so far had PSH
  kShortEnded,   // the last segment so far was shorter than gso_size
  kLarger,       // payload larger than gso_size
  kTooBig,       // the super-frame would exceed 65535 IP bytes
  kNoChecksum,   // a UDP datagram sent without a checksum (candidate rule)
  kTooMany,      // the UDP super-frame already holds kGroUdpMaxSegs datagrams
  kCount
};

inline const char* gro_reject_name(GroReject r) {
  static const char* names[size_t(GroReject::kCount)] = {
      "none",      "not_ipv4",  "ip_options", "fragment",    "not_tcp_udp", "bad_length",
      "tcp_flags", "no_payload", "bad_checksum", "flow",     "ip_fields",   "tcp_header",
      "seq",       "psh_ended", "short_ended", "larger",   "too_big",     "no_checksum", "too_many"};
  return names[size_t(r)];
}

constexpr size_t kGroIpMax = 65535;
constexpr size_t kGroFrameMax = kEthHdr + kGroIpMax;  // room a GroFrame buffer must have
constexpr uint8_t kTcpAck = 0x10;
constexpr uint8_t kTcpPsh = 0x08;
constexpr size_t kGroUdpMaxSegs = 64;

// A segment that passed gro_candidate. Offsets are from the start of the frame.
struct GroSeg {
  const uint8_t* f;
  size_t len;
  uint8_t proto;   // 6 (TCP) or 17 (UDP)
  size_t thl;      // transport header length (8 for UDP)
  size_t payload;  // transport payload bytes
  uint32_t seq;    // TCP only
  bool psh;        // TCP only
};

// A UDP datagram's part of gro_candidate: the Ethernet and IPv4 rules have passed.
inline GroReject gro_udp_candidate(const uint8_t* f, size_t len, GroSeg* s) {
  const uint8_t* ip = f + kEthHdr;
  Ipv4View v;
  if (!ipv4_view(ip, len - kEthHdr, &v) || v.total != len - kEthHdr || len < kEthHdr + 28) return GroReject::kBadLength;
  const uint8_t* udp = ip + 20;
  size_t l4 = len - kEthHdr - 20;
  if (rd16(udp + 4) != l4) return GroReject::kBadLength;
  if (l4 == 8) return GroReject::kNoPayload;
  if (rd16(udp + 6) == 0) return GroReject::kNoChecksum;
  if (inet_checksum(ip, 20) != 0 || inet_checksum(udp, l4, ipv4_pseudo_sum(ip, 17, l4)) != 0)
    return GroReject::kBadChecksum;
  *s = GroSeg{f, len, 17, 8, l4 - 8, 0, false};
  return GroReject::kNone;
}

// Decides whether the frame may be coalesced at all; fills `s` when it may (kNone). `udp`: whether
// UDP datagrams may be (false once the kernel has refused a UDP super-frame).
inline GroReject gro_candidate(const uint8_t* f, size_t len, GroSeg* s, bool udp = true) {
  if (len < kEthHdr + 20 || rd16(f + 12) != kEtherIpv4 || (f[kEthHdr] >> 4) != 4) return GroReject::kNotIpv4;
  const uint8_t* ip = f + kEthHdr;
  if ((ip[0] & 0x0f) != 5) return GroReject::kIpOptions;
  if ((rd16(ip + 6) & 0x3fff) != 0) return GroReject::kFragment;
  if (ip[9] == 17 && udp) return gro_udp_candidate(f, len, s);
  if (ip[9] != 6) return GroReject::kNotTcpUdp;
  Ipv4View v;
  if (!ipv4_view(ip, len - kEthHdr, &v) || v.total != len - kEthHdr || len < kEthHdr + 40) return GroReject::kBadLength;
  const uint8_t* tcp = ip + 20;
  size_t thl = size_t(tcp[12] >> 4) * 4;
  if (thl < 20 || kEthHdr + 20 + thl > len) return GroReject::kBadLength;
  if (tcp[13] != kTcpAck && tcp[13] != (kTcpAck | kTcpPsh)) return GroReject::kTcpFlags;
  if ((tcp[12] & 0x0f) != 0) return GroReject::kTcpFlags;  // reserved bits / historic NS
  size_t l4 = len - kEthHdr - 20;
  if (l4 == thl) return GroReject::kNoPayload;
  if (inet_checksum(ip, 20) != 0 || inet_checksum(tcp, l4, ipv4_pseudo_sum(ip, 6, l4)) != 0)
    return GroReject::kBadChecksum;
  s->f = f;
  s->len = len;
  s->proto = 6;
  s->thl = thl;
  s->payload = l4 - thl;
  s->seq = rd32(tcp + 4);
  s->psh = tcp[13] & kTcpPsh;
  return GroReject::kNone;
}

// A super-frame under construction in a caller-owned buffer of at least kGroFrameMax bytes:
// the first segment's headers, then every merged segment's payload in order.
class GroFrame {
 public:
  GroFrame() = default;
  GroFrame(uint8_t* buf, size_t cap) : buf_(buf), cap_(cap < kGroFrameMax ? cap : kGroFrameMax) {}

  bool empty() const { return count_ == 0; }
  size_t count() const { return count_; }
  size_t length() const { return len_; }
  // The sum of the merged frames' own lengths: what the port counts as sent.
  size_t frame_bytes() const { return frame_bytes_; }
  const uint8_t* data() const { return buf_; }

  // Begins a super-frame with `s` (copied).
  void start(const GroSeg& s) {
    std::memcpy(buf_, s.f, s.len);
    len_ = s.len;
    frame_bytes_ = s.len;
    count_ = 1;
    proto_ = s.proto;
    hlen_ = kEthHdr + 20 + s.thl;
    gso_size_ = s.payload;
    next_seq_ = s.seq + uint32_t(s.payload);
    last_id_ = rd16(s.f + kEthHdr + 4);
    ended_ = s.psh ? GroReject::kPshEnded : GroReject::kNone;
  }

  uint8_t proto() const { return proto_; }
  size_t gso_size() const { return gso_size_; }

  // Whether `s` may be appended (kNone) or why not. Contract: !empty().
  GroReject check(const GroSeg& s) const {
    const uint8_t* h = buf_;
    const uint8_t* f = s.f;
    const uint8_t* hip = h + kEthHdr;
    const uint8_t* ip = f + kEthHdr;
    if (std::memcmp(h, f, kEthHdr) != 0 || hip[9] != ip[9] || std::memcmp(hip + 12, ip + 12, 8) != 0 ||
        std::memcmp(hip + 20, ip + 20, 4) != 0)
      return GroReject::kFlow;
    bool df = ip[6] & 0x40;
    if (hip[1] != ip[1] || hip[8] != ip[8] || hip[6] != ip[6] ||
        (!df && rd16(ip + 4) != uint16_t(last_id_ + 1)))
      return GroReject::kIpFields;
    if (proto_ == 6) {
      // ack (8..12), data offset and flags byte aside, window (14..16), then the options.
      const uint8_t* ht = hip + 20;
      const uint8_t* t = ip + 20;
      if (kEthHdr + 20 + s.thl != hlen_ || std::memcmp(ht + 8, t + 8, 5) != 0 || std::memcmp(ht + 14, t + 14, 2) != 0 ||
          std::memcmp(ht + 20, t + 20, s.thl - 20) != 0)
        return GroReject::kTcpHeader;
      if (s.seq != next_seq_) return GroReject::kSeq;
    }
    if (ended_ != GroReject::kNone) return ended_;
    if (s.payload > gso_size_) return GroReject::kLarger;
    if (len_ - kEthHdr + s.payload > kGroIpMax || len_ + s.payload > cap_) return GroReject::kTooBig;
    if (proto_ == 17 && count_ >= kGroUdpMaxSegs) return GroReject::kTooMany;
    return GroReject::kNone;
  }

  // Appends `s`'s payload. Contract: check(s) == kNone.
  void append(const GroSeg& s) {
    std::memcpy(buf_ + len_, s.f + s.len - s.payload, s.payload);
    len_ += s.payload;
    frame_bytes_ += s.len;
    count_++;
    next_seq_ += uint32_t(s.payload);
    last_id_ = rd16(s.f + kEthHdr + 4);
    if (proto_ == 6 && s.psh) {
      buf_[kEthHdr + 20 + 13] |= kTcpPsh;  // PSH travels with the last byte
      ended_ = GroReject::kPshEnded;
    } else if (s.payload < gso_size_) {
      ended_ = GroReject::kShortEnded;
    }
  }

  // Makes the buffer writable to a TAP: one segment stays as it arrived (a plain header); more
  // get their IP total length and header checksum fixed (and UDP its length), the transport
  // checksum field set to the pseudo-header sum (the kernel completes it), and a GSO TCPv4 or
  // UDP_L4 header. Returns the length. Call once, then clear().
  size_t finish(VnetHdr* h) {
    *h = VnetHdr{};
    if (count_ < 2) return len_;
    uint8_t* ip = buf_ + kEthHdr;
    wr16(ip + 2, uint16_t(len_ - kEthHdr));
    wr16(ip + 10, 0);
    wr16(ip + 10, inet_checksum(ip, 20));
    if (proto_ == 17) {
      wr16(ip + 20 + 4, uint16_t(len_ - kEthHdr - 20));
      l4_set_partial_csum(ip, 20, len_ - kEthHdr, 17);
      *h = udp4_gso_vnet_hdr(kEthHdr, 20, gso_size_);
      return len_;
    }
    tcp4_set_partial_csum(ip, 20, len_ - kEthHdr);
    *h = tcp4_gso_vnet_hdr(kEthHdr, 20, hlen_ - kEthHdr - 20, gso_size_);
    return len_;
  }

  void clear() { count_ = 0; len_ = 0; frame_bytes_ = 0; }

 private:
  uint8_t* buf_ = nullptr;
  size_t cap_ = 0;
  size_t len_ = 0, frame_bytes_ = 0, count_ = 0, hlen_ = 0, gso_size_ = 0;
  uint8_t proto_ = 6;
  uint32_t next_seq_ = 0;
  uint16_t last_id_ = 0;
  GroReject ended_ = GroReject::kNone;
};

// What gro_offer did with a frame: merged into the super-frame; started a new one (`why` the
// super-frame before it, if any, was flushed: an append rule); or passed it by (`why` a candidate
// rule), after flushing the super-frame so that the caller's write keeps the port's order.
struct GroStep {
  enum Kind : uint8_t { kMerged, kStarted, kPassed } kind;
  GroReject why;
};

// One frame's way through a port's coalescer. `flush()` must write `g` (finish, then clear).
template <typename Flush>
GroStep gro_offer(GroFrame& g, const uint8_t* f, size_t len, Flush&& flush, bool udp = true) {
  GroSeg s;
  GroReject r = gro_candidate(f, len, &s, udp);
  if (r != GroReject::kNone) {
    if (!g.empty()) flush();
    return {GroStep::kPassed, r};
  }
  if (!g.empty()) {
    r = g.check(s);
    if (r == GroReject::kNone) {
      g.append(s);
      return {GroStep::kMerged, r};
    }
    flush();
  }
  g.start(s);
  return {GroStep::kStarted, r};
}

}  // namespace appnet
