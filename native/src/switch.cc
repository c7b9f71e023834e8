// The L2 switch both pipelines (and injection) share: learning, lookup and FDB ageing, punting, forwarding from a
// local port (to ports, to VTEPs, flooding), encapsulation into clear VXLAN or a link session, delivery to a port
// through its filter and, for TAPs with offloads, the receive coalescer (gro.h).
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine.h"

namespace appnet {

Learn Engine::learn(Vni& v, const uint8_t* src, int port, uint32_t remote) {
  if (mac_is_group(src)) return Learn::kOk;
  uint64_t k = mac_key(src);
  uint64_t now = now_ms();
  std::lock_guard fl(v.fdb_mu);
  auto it = v.fdb.find(k);
  if (it == v.fdb.end()) {
    // Full: entries that expired since the last once-a-second sweep still hold room; reclaim them first, so a
    // table at its limit takes a new MAC as soon as an old one has aged out, not up to a sweep later.
    if (v.fdb.size() >= opt_.fdb_limit) age_vni(v, now);
    if (v.fdb.size() >= opt_.fdb_limit) return Learn::kFull;
    v.fdb.emplace(k, FdbEntry{port, remote, now, false, now});
    v.ageing.emplace_back(k, now);
    return Learn::kOk;
  }
  FdbEntry& e = it->second;
  // From the wire, the MAC of a local port (static, or learnt and spoken within the ageing time) is a conflict:
  // nobody on the underlay can pull an instance's traffic to itself. A static entry never moves, whoever sends.
  if (port < 0 && e.port >= 0 && (e.is_static || now - e.seen_ms <= opt_.ageing_ms)) return Learn::kConflict;
  if (!e.is_static) {
    e.port = port;
    e.remote = remote;
    e.seen_ms = now;
  }
  return Learn::kOk;
}

bool Engine::lookup(Vni& v, const uint8_t* dst, FdbEntry* out) {
  std::lock_guard fl(v.fdb_mu);
  auto it = v.fdb.find(mac_key(dst));
  if (it == v.fdb.end()) return false;
  if (!it->second.is_static && now_ms() - it->second.seen_ms > opt_.ageing_ms) return false;
  *out = it->second;
  return true;
}

void Engine::age_fdb() {
  std::shared_lock lock(cfg_mu_);
  uint64_t now = now_ms();
  for (auto& [id, v] : vnis_) {
    std::lock_guard fl(v->fdb_mu);
    age_vni(*v, now);
  }
}

// With v.fdb_mu held. Only the items due are visited: their entry expired (erase), was refreshed since (queue it
// again at its last sighting), or is gone, static now or queued again meanwhile (a stale item: drop it).
void Engine::age_vni(Vni& v, uint64_t now) {
  while (!v.ageing.empty() && now - v.ageing.front().second > opt_.ageing_ms) {
    auto [mac, queued] = v.ageing.front();
    v.ageing.pop_front();
    auto it = v.fdb.find(mac);
    if (it == v.fdb.end() || it->second.is_static || it->second.queued_ms != queued) continue;
    if (now - it->second.seen_ms > opt_.ageing_ms) {
      v.fdb.erase(it);
    } else {
      it->second.queued_ms = it->second.seen_ms;
      v.ageing.emplace_back(mac, it->second.seen_ms);
    }
  }
}

bool Engine::punt_frame(uint32_t vni, int port, uint32_t remote, const uint8_t* f, size_t len) {
  if (punt_.empty()) return false;
  const PuntRule* r = punt_.match(vni, f, len);
  if (!r) return false;
  punt_.push(*r, port, vni, remote, f, len);
  return r->consume;
}

void Engine::forward_from_local(Vni& v, Port* in, uint8_t* frame, size_t len, Sender& out) {
  const uint8_t* dst = frame;
  if (in) learn(v, frame + 6, in->id, 0);  // a full table only means unknown-unicast floods for this MAC
  FdbEntry e;
  bool known = !mac_is_group(dst) && lookup(v, dst, &e);
  if (known && e.port >= 0) {
    Port* p = port_by_id(e.port);
    if (p && p != in) deliver_to_port(*p, frame, len, out);
    else if (in) in->counters.drop(kDropNoDestination);
    return;
  }
  if (!captures_.empty() && (known || !v.flood.empty()))
    captures_.offer(kCapVniEncap, kCapOut, v.id, -1, frame, len);
  uint8_t* dgram = frame - kVxlanHdr;
  vxlan_write_header(dgram, v.id);
  int sock = int(flow_hash(frame, len) % kTxSockets);
  if (known) {
    send_to_vtep(out, v, e.remote, sock, dgram, len + kVxlanHdr);
    return;
  }
  // Broadcast, multicast or unknown unicast: every other local port and every VTEP.
  bool sent = false;
  for (int pid : v.ports) {
    Port* p = port_by_id(pid);
    if (!p || p == in) continue;
    deliver_to_port(*p, frame, len, out);
    sent = true;
  }
  for (uint32_t remote : v.flood) {
    send_to_vtep(out, v, remote, sock, dgram, len + kVxlanHdr);
    sent = true;
  }
  if (!sent && in) in->counters.drop(kDropNoDestination);
}

void Engine::send_to_vtep(Sender& out, Vni& v, uint32_t remote, int sock, const uint8_t* dgram, size_t len) {
  if (!v.encrypted) {
    if (!captures_.empty())
      captures_.offer_wire(kCapOut, v.id, opt_.underlay_ip, tx_ports_[sock], remote, opt_.underlay_port, dgram, len);
    out.to_vtep(remote, sock, dgram, len, v);
    return;
  }
  uint64_t now = now_ms();
  LinkPeer* p = links_.peer(remote);
  LinkSession* s = p ? p->sendable(now) : nullptr;
  if (!s) {
    v.counters.drop(kDropNoSession);
    if (p) {
      p->counters.drop(kLinkDropNoSession);
      p->want_session.store(true, std::memory_order_relaxed);
    }
    return;
  }
  uint64_t ctr = s->send_ctr.fetch_add(1, std::memory_order_relaxed);
  if (ctr >= link::kRejectAfterMessages) {
    v.counters.drop(kDropNoSession);
    p->counters.drop(kLinkDropCounterExhausted);
    return;
  }
  uint8_t* msg = out.link_buffer();
  size_t n = link::seal(s->send_key, s->remote_idx, ctr, dgram, len, msg);
  p->counters.tx_packets.fetch_add(1, std::memory_order_relaxed);
  p->counters.tx_bytes.fetch_add(n, std::memory_order_relaxed);
  p->last_tx_ms.store(now, std::memory_order_relaxed);
  if (!captures_.empty())
    captures_.offer_wire(kCapOut, v.id, opt_.underlay_ip, opt_.link_port, p->endpoint_ip(), p->endpoint_port(), msg, n);
  out.to_link(p->endpoint_ip(), p->endpoint_port(), msg, n, &v);
}

void Engine::count_filtered(Port& p) {
  p.counters.drop(kDropFiltered);
  if (Vni* v = vni_by_id(p.vni)) v->counters.drop(kDropFiltered);
}

void Engine::deliver_to_port(Port& p, uint8_t* frame, size_t len, Sender& out, TapGro* gro) {
  // Before anything else, and so before the frame can join a super-frame below.
  if (!filter_passes(p, frame, len, FilterDir::kReceive)) return;
  if (len > size_t(p.mtu) + kEthHdr) {
    p.counters.drop(kDropOversize);
    return;
  }
  if (p.kind == DeviceKind::kTun) {
    tun_deliver(p, frame, len, out);
    return;
  }
  if (!captures_.empty()) captures_.offer(kCapPort, kCapOut, p.vni, p.id, frame, len);
  if (gro && p.vnet) {
    TapGro::Slot* s = nullptr;
    TapGro::Slot* free_slot = nullptr;
    for (TapGro::Slot& x : gro->slots) {
      if (x.frame.empty()) { if (!free_slot) free_slot = &x; }
      else if (x.port == &p) { s = &x; break; }
    }
    if (gro->refused) {
      if (s) gro_write(*gro, *s);  // what was pending goes first
    } else {
      if (!s) s = free_slot;
      if (!s) {  // more ports with a super-frame pending than slots: make room
        s = &gro->slots[gro->victim];
        gro->victim = (gro->victim + 1) % TapGro::kSlots;
        gro_write(*gro, *s);
      }
      GroStep st = gro_offer(s->frame, frame, len, [&] { gro_write(*gro, *s); }, gro->udp && !gro->udp_refused);
      if (st.kind != GroStep::kPassed) {
        s->port = &p;
        return;
      }
    }
  }
  if (write_port(p, queue_fd(p, frame, len), frame, len)) p.counters.tx(len);
  else p.counters.drop(kDropQueueFull);
}

void Engine::gro_flush(TapGro& g) {
  for (TapGro::Slot& s : g.slots)
    if (!s.frame.empty()) gro_write(g, s);
}

void Engine::gro_write(TapGro& g, TapGro::Slot& s) {
  Port& p = *s.port;
  size_t count = s.frame.count();
  size_t bytes = s.frame.frame_bytes();
  VnetHdr h;
  size_t n = s.frame.finish(&h);
  int fd = queue_fd(p, s.frame.data(), n);
  iovec iov[2] = {{&h, sizeof(h)}, {const_cast<uint8_t*>(s.frame.data()), n}};
  if (writev(fd, iov, 2) >= 0) {
    p.counters.tx(bytes, count);
    if (count > 1) {
      p.gro_merged.fetch_add(count, std::memory_order_relaxed);
      p.gro_writes.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (bool udp = s.frame.proto() == 17; count > 1 && ((udp ? g.udp_refused : g.refused) || (errno != EAGAIN && errno != ENOBUFS))) {
    // The TAP would not take the super-frame: cut it back into the segments it was made of
    // (offload.h recreates their ids, checksums and flags) and stop coalescing that protocol on this
    // thread. A kernel before 6.2 has no UDP segmentation and refuses GSO UDP_L4; TCP carries on.
    bool& refused = udp ? g.udp_refused : g.refused;
    if (!refused) gro_fallbacks_.fetch_add(1, std::memory_order_relaxed);
    refused = true;
    Tcp4Gso t;
    size_t k = udp ? udp4_gso_count(n, h.gso_size) : (tcp4_gso_parse(s.frame.data(), n, h.gso_size, &t), t.count);
    for (size_t i = 0; i < k; i++) {
      size_t sl = udp ? udp4_gso_segment(s.frame.data(), n, h.gso_size, i, g.scratch.get()) : tcp4_gso_segment(t, i, g.scratch.get());
      if (write_port(p, fd, g.scratch.get(), sl)) p.counters.tx(sl);
      else p.counters.drop(kDropQueueFull);
    }
  } else {
    p.counters.drop(kDropQueueFull, count);
  }
  s.frame.clear();
}

bool Engine::deliver_super_frame(Vni& v, uint8_t* frame, size_t len, const Tcp4Gso& g) {
  FdbEntry e;
  if (!captures_.empty() || mac_is_group(frame) || !lookup(v, frame, &e) || e.port < 0) return false;
  Port* p = port_by_id(e.port);
  if (!p || !p->vnet || p->kind != DeviceKind::kTap || p->filter || g.hlen - kEthHdr + g.mss > size_t(p->mtu))
    return false;
  VnetHdr h = tcp4_gso_vnet_hdr(g, kEthHdr);
  iovec iov[2] = {{&h, sizeof(h)}, {frame, len}};
  if (writev(queue_fd(*p, frame, len), iov, 2) >= 0) {
    p->counters.tx(len, g.count);
    return true;
  }
  if (errno == EAGAIN || errno == ENOBUFS) {
    p->counters.drop(kDropQueueFull, g.count);
    return true;
  }
  uplink_gso_fallbacks_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool Engine::write_port(Port& p, int fd, const uint8_t* data, size_t len) {
  if (!p.vnet) return write(fd, data, len) >= 0;
  // No offload on the way in: the frame is complete, the kernel verifies its checksums.
  static const uint8_t kPlainHdr[10] = {};
  iovec iov[2] = {{const_cast<uint8_t*>(kPlainHdr), sizeof(kPlainHdr)}, {const_cast<uint8_t*>(data), len}};
  return writev(fd, iov, 2) >= 0;
}

}  // namespace appnet
