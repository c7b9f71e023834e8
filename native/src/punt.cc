#include "punt.h"

#include <algorithm>
#include <iterator>

#include "wire.h"

namespace appnet {

uint32_t PuntTable::add(PuntRule r) {
  r.id = next_id_++;
  rules_.push_back(r);
  return r.id;
}

bool PuntTable::remove(uint32_t id) {
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (it->id == id) { rules_.erase(it); return true; }
  }
  return false;
}

const PuntRule* PuntTable::match(uint32_t vni, const uint8_t* f, size_t len) const {
  if (len < kEthHdr) return nullptr;
  uint16_t et = rd16(f + 12);
  for (const PuntRule& r : rules_) {
    if (r.vni >= 0 && uint32_t(r.vni) != vni) continue;
    bool wants_ip = r.ip_proto >= 0 || r.dst_ip || r.dst_port >= 0;
    if (r.ethertype >= 0 && et != r.ethertype) continue;
    if (!wants_ip) return &r;
    Ipv4View ip;
    if (et != kEtherIpv4 || !ipv4_view(f + kEthHdr, len - kEthHdr, &ip)) continue;
    if (r.ip_proto >= 0 && ip.proto != r.ip_proto) continue;
    if (r.dst_ip && ip.dst != r.dst_ip) continue;
    if (r.dst_port >= 0) {
      L4Ports ports;  // none in a later fragment, nor in a header cut short
      if (!l4_ports(ip, &ports) || ports.dst != r.dst_port) continue;
    }
    return &r;
  }
  return nullptr;
}

bool PuntTable::push(const PuntRule& r, int port, uint32_t vni, uint32_t remote,
                     const uint8_t* f, size_t len) {
  return enqueue(ring_, kCapacity, PuntItem{r.id, port, vni, remote, 0, {}}, f, len);
}

bool PuntTable::push_raw(uint32_t rule, uint32_t remote, uint16_t remote_port, const uint8_t* d,
                         size_t len) {
  return enqueue(handshakes_, kHandshakeCapacity, PuntItem{rule, -1, 0, remote, remote_port, {}}, d, len);
}

bool PuntTable::enqueue(std::vector<PuntItem>& ring, size_t capacity, PuntItem item, const uint8_t* f, size_t len) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ring.size() >= capacity || len > kMaxFrame) { dropped_++; return false; }
    item.frame.assign(f, f + len);
    ring.push_back(std::move(item));
    punted_++;
    if (!notified_) { notified_ = true; wake = true; }
  }
  if (wake && notify) notify();
  return true;
}

std::vector<PuntItem> PuntTable::drain() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<PuntItem> out;
  out.swap(ring_);
  out.insert(out.end(), std::make_move_iterator(handshakes_.begin()), std::make_move_iterator(handshakes_.end()));
  handshakes_.clear();
  notified_ = false;
  return out;
}

bool HandshakeLimiter::allow(uint32_t src, uint64_t now_ms) {
  if (buckets_.size() >= kMaxSources && buckets_.find(src) == buckets_.end()) buckets_.clear();
  auto [it, fresh] = buckets_.try_emplace(src, Bucket{kBurst, now_ms});
  Bucket& b = it->second;
  if (!fresh) {
    b.tokens = std::min(kBurst, b.tokens + double(now_ms - b.at_ms) * kPerSecond / 1000.0);
    b.at_ms = now_ms;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

}  // namespace appnet
