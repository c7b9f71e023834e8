// Capture sessions: filter, copy into a bounded ring, drain from JS. See capture.h.
#include "capture.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "wire.h"

namespace appnet {
namespace {

timespec realtime() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

size_t padded(size_t n) { return (n + 7) & ~size_t(7); }

constexpr size_t kWireHead = 14 + 20 + 8;  // synthesised Ethernet + IPv4 + UDP
// How much of a wire record BPF may look at: enough for the outer headers and the inner headers
// of a VXLAN datagram; a filter looking deeper does not match.
constexpr size_t kWireFilterBytes = 512;

}  // namespace

void CaptureSession::offer(uint32_t point, uint8_t dir, uint32_t vni, int port, const uint8_t* head,
                           size_t head_len, const uint8_t* body, size_t body_len) {
  size_t total = head_len + body_len;
  if (!spec_.bpf.empty()) {
    // BPF needs contiguous bytes: a framed record (no head) is used as it is.
    const uint8_t* pkt = body;
    size_t have = body_len;
    thread_local uint8_t scratch[kWireHead + kWireFilterBytes];
    if (head_len) {
      size_t take = std::min(body_len, kWireFilterBytes);
      std::memcpy(scratch, head, head_len);
      std::memcpy(scratch + head_len, body, take);
      pkt = scratch;
      have = head_len + take;
    }
    if (bpf_filter(spec_.bpf.data(), pkt, unsigned(total), unsigned(have)) == 0) {
      filtered_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  size_t keep = std::min<size_t>(total, spec_.snaplen);
  size_t need = padded(sizeof(PackedRecordHeader) + keep);
  // Never wait for JS: if it is draining right now, this copy is dropped like one that does not fit.
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || count_ >= spec_.ring || used_ + need > cap_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint8_t* at = buf_.get() + used_;
  timespec ts = realtime();
  PackedRecordHeader h{uint32_t(ts.tv_sec), uint32_t(ts.tv_nsec), uint32_t(total), vni, port, uint16_t(keep), uint8_t(point), dir};
  std::memcpy(at, &h, sizeof(h));
  at += sizeof(h);
  size_t hk = std::min(keep, head_len);
  if (hk) std::memcpy(at, head, hk);
  if (keep > hk) std::memcpy(at + hk, body, keep - hk);
  used_ += need;
  count_++;
  captured_.fetch_add(1, std::memory_order_relaxed);
}

CaptureSession::CaptureSession(uint32_t id, CaptureSpec spec) : id_(id), spec_(std::move(spec)) {
  size_t per = padded(sizeof(PackedRecordHeader) + std::min<size_t>(spec_.snaplen, 65535));
  cap_ = std::max(per, std::min(size_t(spec_.ring) * per, kMaxRingBytes));
  // new[] without () leaves the bytes uninitialised: pages are only touched as records fill them.
  buf_.reset(new uint8_t[cap_]);
  spare_.reset(new uint8_t[cap_]);
}

CaptureBatch CaptureSession::drain() {
  size_t used;
  uint32_t count;
  {
    std::lock_guard lock(mu_);
    std::swap(buf_, spare_);
    used = used_;
    count = count_;
    used_ = 0;
    count_ = 0;
  }
  // Copied outside the lock: the pipelines are already filling the other buffer. Only this (JS) thread
  // touches spare_ until the next drain.
  CaptureBatch b;
  b.bytes.assign(spare_.get(), spare_.get() + used);
  b.count = count;
  return b;
}

uint32_t CaptureTable::add(CaptureSpec spec) {
  uint32_t id = next_id_++;
  sessions_.push_back(std::make_shared<CaptureSession>(id, std::move(spec)));
  return id;
}

bool CaptureTable::remove(uint32_t id) {
  auto it = std::find_if(sessions_.begin(), sessions_.end(), [&](auto& s) { return s->id() == id; });
  if (it == sessions_.end()) return false;
  sessions_.erase(it);
  return true;
}

std::shared_ptr<CaptureSession> CaptureTable::find(uint32_t id) const {
  for (auto& s : sessions_) if (s->id() == id) return s;
  return nullptr;
}

void CaptureTable::offer_wire(uint8_t dir, uint32_t vni, uint32_t src, uint16_t sport, uint32_t dst,
                              uint16_t dport, const uint8_t* payload, size_t len) {
  bool any = false;
  for (auto& s : sessions_) any = any || s->wants(kCapWire, vni, -1);
  if (!any) return;
  uint8_t h[kWireHead] = {};
  // Ethernet: locally administered placeholder MACs (the underlay's real ones are not known here).
  h[0] = 0x02; h[5] = 0x02;
  h[6] = 0x02; h[11] = 0x01;
  h[12] = 0x08; h[13] = 0x00;
  uint8_t* ip = h + 14;
  size_t ip_len = 20 + 8 + len;
  ip[0] = 0x45;
  ip[2] = uint8_t(ip_len >> 8); ip[3] = uint8_t(ip_len);
  ip[6] = 0x40;  // DF: the engine never fragments
  ip[8] = 64;
  ip[9] = 17;
  wr32(ip + 12, src);
  wr32(ip + 16, dst);
  wr16(ip + 10, inet_checksum(ip, 20));
  uint8_t* udp = ip + 20;
  wr16(udp, sport);
  wr16(udp + 2, dport);
  wr16(udp + 4, uint16_t(8 + len));  // checksum 0: none (allowed for IPv4)
  for (auto& s : sessions_)
    if (s->wants(kCapWire, vni, -1)) s->offer(kCapWire, dir, vni, -1, h, sizeof(h), payload, len);
}

std::vector<bpf_insn> compile_filter(const std::string& expr, uint32_t snaplen) {
  pcap_t* p = pcap_open_dead(DLT_EN10MB, int(std::max<uint32_t>(snaplen, 65535)));
  if (!p) throw std::runtime_error("libpcap: pcap_open_dead failed");
  bpf_program prog{};
  if (pcap_compile(p, &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    std::string err = pcap_geterr(p);
    pcap_close(p);
    throw std::invalid_argument("filter: " + err);
  }
  std::vector<bpf_insn> out(prog.bf_insns, prog.bf_insns + prog.bf_len);
  pcap_freecode(&prog);
  pcap_close(p);
  return out;
}

}  // namespace appnet
