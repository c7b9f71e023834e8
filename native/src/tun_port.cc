// TUN ports carry IPv4 without a link layer. On the overlay the engine stands in for them as
// an Ethernet station: it synthesises the Ethernet header on the way out (the destination MAC
// comes from a per-port neighbour table learned from the overlay), answers ARP for the port's
// address, and strips the header on delivery. Destinations are treated as on-link.
// Also here: ICMP "fragmentation needed" for oversize DF packets from any port.
#include <unistd.h>

#include <cstring>
#include <iterator>

#include "engine.h"

namespace appnet {
namespace {

constexpr size_t kArpLen = 28;
constexpr uint64_t kBroadcastMac = 0xffffffffffffULL;

void write_eth(uint8_t* f, uint64_t dst, const uint8_t* src, uint16_t type) {
  mac_write(f, dst);
  std::memcpy(f + 6, src, 6);
  wr16(f + 12, type);
}

// Builds an Ethernet/IPv4 ARP frame (42 bytes) at `f`.
void write_arp(uint8_t* f, uint16_t op, uint64_t eth_dst, const uint8_t* sha, uint32_t spa,
               uint64_t tha, uint32_t tpa) {
  write_eth(f, eth_dst, sha, kEtherArp);
  uint8_t* a = f + kEthHdr;
  wr16(a, 1);
  wr16(a + 2, kEtherIpv4);
  a[4] = 6;
  a[5] = 4;
  wr16(a + 6, op);
  std::memcpy(a + 8, sha, 6);
  wr32(a + 14, spa);
  mac_write(a + 18, tha);
  wr32(a + 24, tpa);
}

uint64_t multicast_mac(uint32_t ip) { return 0x01005e000000ULL | (ip & 0x7fffff); }

}  // namespace

size_t Engine::tun_frame_from_device(Port& p, uint8_t* frame, size_t ip_len, Sender& out,
                                     Vni& v) {
  const uint8_t* ip = frame + kEthHdr;
  if (ip_len < 20 || (ip[0] >> 4) != 4) {
    // Not IPv4 (the overlay only carries IPv4 for TUN ports) or a runt.
    p.counters.drop(ip_len >= 1 && (ip[0] >> 4) == 6 ? kDropNoDestination : kDropMalformed);
    return 0;
  }
  uint32_t dst = rd32(ip + 16);
  uint64_t dst_mac = kBroadcastMac;
  if ((dst >> 28) == 0xe) {
    dst_mac = multicast_mac(dst);
  } else if (dst != 0xffffffff) {
    bool known = false, ask = false;
    uint64_t now = now_ms();
    {
      std::lock_guard nl(p.neigh_mu);
      auto it = p.neigh.find(dst);
      if (it != p.neigh.end() && now - it->second.seen_ms <= opt_.ageing_ms) { dst_mac = it->second.mac; known = true; }
      else {
        if (p.arp_sent_ms.size() >= opt_.fdb_limit && p.arp_sent_ms.find(dst) == p.arp_sent_ms.end()) p.arp_sent_ms.clear();
        uint64_t& last = p.arp_sent_ms[dst];
        if (now - last >= 1000) { last = now; ask = true; }
      }
    }
    if (!known && ask) {
      // Resolve it; meanwhile this packet goes out as broadcast, which IPv4 hosts accept.
      uint8_t buf[kVxlanHdr + kEthHdr + kArpLen];
      write_arp(buf + kVxlanHdr, 1, kBroadcastMac, p.mac, p.ipv4, 0, dst);
      // The engine asks on the instance's behalf, so the port's filter applies. Not counted: the
      // packet that made us ask is checked (and counted) on its own.
      if (!p.filter || port_filter_allows(*p.filter, buf + kVxlanHdr, sizeof(buf) - kVxlanHdr, FilterDir::kSend)) {
        ImmediateSender now_out(tx_fds_, opt_.underlay_port, link_fd_);
        forward_from_local(v, &p, buf + kVxlanHdr, sizeof(buf) - kVxlanHdr, now_out);
      }
    }
  }
  write_eth(frame, dst_mac, p.mac, kEtherIpv4);
  return kEthHdr + ip_len;
}

bool Engine::tun_learn(Port& p, uint32_t ip, uint64_t mac, uint64_t now) {
  auto it = p.neigh.find(ip);
  if (it != p.neigh.end()) {
    it->second = Port::Neighbour{mac, now};
    return true;
  }
  if (p.neigh.size() >= opt_.fdb_limit) {
    // Full: the expired entries go, in a walk of the full table at most once a second (a flood of new
    // addresses meets a full table, not one walk per frame).
    if (now - p.neigh_swept_ms < 1000) return false;
    p.neigh_swept_ms = now;
    for (auto e = p.neigh.begin(); e != p.neigh.end();) e = now - e->second.seen_ms > opt_.ageing_ms ? p.neigh.erase(e) : std::next(e);
    if (p.neigh.size() >= opt_.fdb_limit) return false;
  }
  p.neigh.emplace(ip, Port::Neighbour{mac, now});
  return true;
}

void Engine::tun_deliver(Port& p, uint8_t* frame, size_t len, Sender& out) {
  uint16_t et = rd16(frame + 12);
  bool for_us = mac_is_group(frame) || std::memcmp(frame, p.mac, 6) == 0;
  if (et == kEtherArp) {
    if (len < kEthHdr + kArpLen) { p.counters.drop(kDropMalformed); return; }
    const uint8_t* a = frame + kEthHdr;
    if (rd16(a) != 1 || rd16(a + 2) != kEtherIpv4 || a[4] != 6 || a[5] != 4) {
      p.counters.drop(kDropMalformed);
      return;
    }
    uint32_t spa = rd32(a + 14), tpa = rd32(a + 24);
    if (spa) {
      std::lock_guard nl(p.neigh_mu);
      if (!tun_learn(p, spa, mac_key(a + 8), now_ms())) { p.counters.drop(kDropFdbFull); return; }
    }
    if (rd16(a + 6) == 1 && tpa == p.ipv4 && p.ipv4) {
      Vni* v = vni_by_id(p.vni);
      if (!v) return;
      uint8_t buf[kVxlanHdr + kEthHdr + kArpLen];
      write_arp(buf + kVxlanHdr, 2, mac_key(a + 8), p.mac, p.ipv4, mac_key(a + 8), spa);
      forward_from_local(*v, &p, buf + kVxlanHdr, sizeof(buf) - kVxlanHdr, out);
    }
    return;
  }
  if (et != kEtherIpv4 || !for_us) {
    if (et != kEtherIpv4) p.counters.drop(kDropNoDestination);
    return;
  }
  const uint8_t* ip = frame + kEthHdr;
  Ipv4View v;
  if (len < kEthHdr || !ipv4_view(ip, len - kEthHdr, &v)) { p.counters.drop(kDropMalformed); return; }
  if (!mac_is_group(frame + 6)) {
    std::lock_guard nl(p.neigh_mu);
    if (!tun_learn(p, v.src, mac_key(frame + 6), now_ms())) { p.counters.drop(kDropFdbFull); return; }
  }
  if (!write_port(p, queue_fd(p, frame, len), ip, v.total)) p.counters.drop(kDropQueueFull);
  else p.counters.tx(v.total);
}

size_t Engine::frag_needed_frame(const uint8_t* f, size_t len, int mtu, uint8_t* o) {
  if (len < kEthHdr + 20 || rd16(f + 12) != kEtherIpv4) return 0;
  const uint8_t* ip = f + kEthHdr;
  size_t ihl = size_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || len < kEthHdr + ihl + 8) return 0;
  if (!(ip[6] & 0x40)) return 0;  // DF clear: the sender allows fragmentation
  // Never answer an ICMP error with another (RFC 1812 4.3.2.7): only echo may be answered.
  if (ip[9] == 1 && ip[ihl] != 8 && ip[ihl] != 0) return 0;

  size_t quoted = ihl + 8;
  size_t icmp_len = 8 + quoted;
  write_eth(o, mac_key(f + 6), f, kEtherIpv4);  // from the frame's destination, back to its source
  uint8_t* oip = o + kEthHdr;
  std::memset(oip, 0, 20);
  oip[0] = 0x45;
  oip[1] = 0xc0;  // network control precedence, as routers send ICMP errors
  wr16(oip + 2, uint16_t(20 + icmp_len));
  oip[8] = 64;
  oip[9] = 1;
  std::memcpy(oip + 12, ip + 16, 4);  // source: the unreachable destination
  std::memcpy(oip + 16, ip + 12, 4);
  wr16(oip + 10, inet_checksum(oip, 20));
  uint8_t* icmp = oip + 20;
  icmp[0] = 3;  // destination unreachable
  icmp[1] = 4;  // fragmentation needed and DF set (RFC 1191: next-hop MTU in bytes 6-7)
  wr16(icmp + 2, 0);
  wr16(icmp + 4, 0);
  wr16(icmp + 6, uint16_t(mtu));
  std::memcpy(icmp + 8, ip, quoted);
  wr16(icmp + 2, inet_checksum(icmp, icmp_len));
  return kEthHdr + 20 + icmp_len;
}

void Engine::reply_frag_needed(Port& p, const uint8_t* f, size_t len, int mtu) {
  uint8_t out[kFragNeededMax];
  size_t total = frag_needed_frame(f, len, mtu, out);
  if (!total) return;
  const uint8_t* w = p.kind == DeviceKind::kTun ? out + kEthHdr : out;
  size_t wlen = p.kind == DeviceKind::kTun ? total - kEthHdr : total;
  if (write_port(p, queue_fd(p, out, total), w, wlen)) p.counters.tx(wlen);
}

}  // namespace appnet
