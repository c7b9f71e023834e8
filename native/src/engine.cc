// Engine setup, configuration calls from JS, and the L2 switch shared by both pipelines.
#include "engine.h"
#include "memory_device.h"

#include <arpa/inet.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace appnet {
namespace {

[[noreturn]] void sys_fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::string ip_str(uint32_t ip) {
  in_addr a{htonl(ip)};
  char b[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, b, sizeof(b));
  return b;
}

int udp_socket(uint32_t ip, uint16_t port, int buf_bytes) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) sys_fail("udp socket");
  // Outer packets are never fragmented (RFC 7348 4.3): oversize sends fail with EMSGSIZE.
  int pmtu = IP_PMTUDISC_DO;
  setsockopt(s, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu));
  // FORCE needs CAP_NET_ADMIN, which appnetd has; fall back to the capped variant.
  if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &buf_bytes, sizeof(buf_bytes)) < 0)
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf_bytes, sizeof(buf_bytes));
  if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &buf_bytes, sizeof(buf_bytes)) < 0)
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf_bytes, sizeof(buf_bytes));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip);
  a.sin_port = htons(port);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) {
    int err = errno;
    close(s);
    errno = err;
    sys_fail("bind " + ip_str(ip) + ":" + std::to_string(port));
  }
  return s;
}

// A copy of an injected frame behind the headroom the switch writes the VXLAN header into.
std::vector<uint8_t> with_headroom(const uint8_t* frame, size_t len) {
  std::vector<uint8_t> buf(kVxlanHdr + len);
  std::memcpy(buf.data() + kVxlanHdr, frame, len);
  return buf;
}

sockaddr_in vtep_addr(uint32_t ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip);
  a.sin_port = htons(port);
  return a;
}

}  // namespace

void ImmediateSender::to_vtep(uint32_t remote, int sock, const uint8_t* d, size_t len, Vni& v) {
  sockaddr_in a = vtep_addr(remote, port_);
  if (sendto(fds_[sock], d, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0)
    v.c.drop(errno == EMSGSIZE ? kDropOversize : kDropQueueFull);
  else
    v.c.tx(len);
}

uint8_t* ImmediateSender::link_buffer() {
  if (!buf_) buf_.reset(new uint8_t[kSlotSize + link::kOverhead]);
  return buf_.get();
}

void ImmediateSender::to_link(uint32_t ip, uint16_t port, const uint8_t* msg, size_t len, Vni* v) {
  sockaddr_in a = vtep_addr(ip, port);
  bool ok = sendto(link_fd_, msg, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) >= 0;
  if (!v) return;
  if (ok) v->c.tx(len);
  else v->c.drop(errno == EMSGSIZE ? kDropOversize : kDropQueueFull);
}

uint64_t Engine::now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

Engine::Engine(const EngineOptions& o) : opt_(o) {
  for (int& fd : tx_fds_) fd = -1;
  try {
    rx_fd_ = udp_socket(o.underlay_ip, o.underlay_port, 8 << 20);
    // Let the kernel coalesce runs of datagrams (the RX pipeline splits them); optional.
    int one = 1;
    if (o.udp_gro) setsockopt(rx_fd_, SOL_UDP, 104 /* UDP_GRO */, &one, sizeof(one));
    for (int& fd : tx_fds_) fd = udp_socket(o.underlay_ip, 0, 4 << 20);
    if (o.link_port) {
      if (!link::init()) throw std::runtime_error("libsodium failed to initialise");
      // Any address: the link keeps working when this host's underlay address changes.
      link_fd_ = udp_socket(0, o.link_port, 8 << 20);
      if (o.udp_gro) setsockopt(link_fd_, SOL_UDP, 104 /* UDP_GRO */, &one, sizeof(one));
    }
    for (int i = 0; i < kTxSockets; i++) {
      sockaddr_in a{};
      socklen_t l = sizeof(a);
      getsockname(tx_fds_[i], reinterpret_cast<sockaddr*>(&a), &l);
      tx_ports_[i] = ntohs(a.sin_port);
    }
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) sys_fail("epoll_create1");
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) sys_fail("eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = ~uint64_t(0);
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) < 0) sys_fail("epoll_ctl wake");
  } catch (...) {
    if (rx_fd_ >= 0) close(rx_fd_);
    if (link_fd_ >= 0) close(link_fd_);
    for (int fd : tx_fds_) if (fd >= 0) close(fd);
    if (epfd_ >= 0) close(epfd_);
    if (wake_fd_ >= 0) close(wake_fd_);
    throw;
  }
}

Engine::~Engine() {
  stop();
  close(rx_fd_);
  if (link_fd_ >= 0) close(link_fd_);
  for (int fd : tx_fds_) close(fd);
  close(epfd_);
  close(wake_fd_);
}

std::vector<uint16_t> Engine::tx_source_ports() const {
  std::vector<uint16_t> out;
  for (int fd : tx_fds_) {
    sockaddr_in a{};
    socklen_t l = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    out.push_back(ntohs(a.sin_port));
  }
  return out;
}

void Engine::wake_tx() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void Engine::stop() {
  if (running_.exchange(false)) {
    wake_tx();
    // The RX thread polls with a short timeout and sees running_ == false.
    if (tx_thread_.joinable()) tx_thread_.join();
    if (rx_thread_.joinable()) rx_thread_.join();
    if (link_thread_.joinable()) link_thread_.join();
  }
  std::unique_lock lock(cfg_mu_);
  for (auto& p : ports_) {
    if (!p) continue;
    close(p->fd);
    if (p->peer_fd >= 0) close(p->peer_fd);
    p.reset();
  }
  for (auto& [id, v] : vnis_) v->ports.clear();
  if (uplink_fd_ >= 0) {
    close(uplink_fd_);
    uplink_fd_ = -1;
  }
  if (uplink_peer_fd_ >= 0) {
    close(uplink_peer_fd_);
    uplink_peer_fd_ = -1;
  }
}

void Engine::add_vni(uint32_t vni, int mtu, bool encrypted) {
  if (vni > kMaxVni) throw std::invalid_argument("VNI " + std::to_string(vni) + " exceeds 24 bits");
  std::unique_lock lock(cfg_mu_);
  if (vnis_.count(vni)) throw std::invalid_argument("VNI " + std::to_string(vni) + " already exists");
  auto v = std::make_unique<Vni>();
  v->id = vni;
  v->mtu = mtu;
  if (encrypted && !links_enabled())
    throw std::invalid_argument("VNI " + std::to_string(vni) + " is encrypted but links are disabled");
  v->encrypted = encrypted;
  vnis_[vni] = std::move(v);
}

void Engine::remove_vni(uint32_t vni) {
  std::unique_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  if (!v->ports.empty())
    throw std::invalid_argument("VNI " + std::to_string(vni) + " still has ports");
  vnis_.erase(vni);
}

void Engine::set_flood(uint32_t vni, std::vector<uint32_t> remotes) {
  std::unique_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  v->flood = std::move(remotes);
}

int Engine::add_port(const PortSpec& s) {
  {
    std::shared_lock lock(cfg_mu_);
    if (!vni_by_id(s.vni))
      throw std::invalid_argument("port " + s.name + ": VNI " + std::to_string(s.vni) + " does not exist");
  }
  // Device set-up happens outside the lock: it may take milliseconds (netlink, setns).
  bool offload = s.kind == DeviceKind::kTap && opt_.tap_offload;
  int fd, peer_fd = -1;
  auto close_fds = [&] {
    close(fd);
    if (peer_fd >= 0) close(peer_fd);
  };
  if (s.memory) {
    MemoryDevice m = memory_device_open();
    fd = m.engine_fd;
    peer_fd = m.peer_fd;
  } else if (!s.netns.empty()) {
    fd = device_open_in_netns(s.kind, s.name, offload, s.mac, s.mtu, s.addresses, s.netns);
  } else {
    fd = device_open(s.kind, s.name, offload);
    try {
      if (s.kind == DeviceKind::kTap) device_set_mac(s.name, s.mac);
      device_set_mtu(s.name, s.mtu);
      device_set_ipv4(s.name, s.addresses);
      device_set_up(s.name, true);
    } catch (...) {
      close(fd);
      throw;
    }
  }
  std::unique_lock lock(cfg_mu_);
  Vni* v = vni_by_id(s.vni);
  if (!v) {
    close_fds();
    throw std::invalid_argument("VNI " + std::to_string(s.vni) + " was removed");
  }
  int id = -1;
  for (size_t i = 0; i < ports_.size(); i++) if (!ports_[i]) { id = int(i); break; }
  if (id < 0) { id = int(ports_.size()); ports_.emplace_back(); }
  auto p = std::make_unique<Port>();
  p->id = id;
  p->gen = next_gen_++;
  p->name = s.name;
  p->kind = s.kind;
  p->fd = fd;
  p->peer_fd = peer_fd;
  p->vnet = offload;
  p->vni = s.vni;
  std::memcpy(p->mac, s.mac, 6);
  p->mtu = s.mtu;
  p->ipv4 = s.ipv4;
  if (s.filtered) p->filter = std::make_unique<const PortFilter>(s.filter);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = uint64_t(p->gen) << 32 | uint32_t(id);
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int err = errno;
    close_fds();
    errno = err;
    sys_fail("epoll_ctl add " + s.name);
  }
  v->ports.push_back(id);
  ports_[id] = std::move(p);
  return id;
}

void Engine::remove_port(int id) {
  std::unique_lock lock(cfg_mu_);
  Port* p = port_by_id(id);
  if (!p) throw std::invalid_argument("port " + std::to_string(id) + " does not exist");
  epoll_ctl(epfd_, EPOLL_CTL_DEL, p->fd, nullptr);
  if (Vni* v = vni_by_id(p->vni)) {
    auto& ps = v->ports;
    for (auto it = ps.begin(); it != ps.end(); ++it) if (*it == id) { ps.erase(it); break; }
    std::lock_guard fl(v->fdb_mu);
    for (auto it = v->fdb.begin(); it != v->fdb.end();)
      it = it->second.port == id ? v->fdb.erase(it) : std::next(it);
  }
  close(p->fd);
  if (p->peer_fd >= 0) close(p->peer_fd);
  ports_[id].reset();
}

int Engine::port_peer_fd(int id) {
  std::shared_lock lock(cfg_mu_);
  Port* p = port_by_id(id);
  if (!p) throw std::invalid_argument("port " + std::to_string(id) + " does not exist");
  return p->peer_fd;
}

void Engine::add_fdb(uint32_t vni, uint64_t mac, int port, uint32_t remote) {
  std::shared_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  if (port >= 0 && !port_by_id(port))
    throw std::invalid_argument("port " + std::to_string(port) + " does not exist");
  std::lock_guard fl(v->fdb_mu);
  v->fdb[mac] = FdbEntry{port, remote, now_ms(), true};
}

bool Engine::remove_fdb(uint32_t vni, uint64_t mac) {
  std::shared_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) return false;
  std::lock_guard fl(v->fdb_mu);
  return v->fdb.erase(mac) > 0;
}

std::vector<FdbRow> Engine::fdb(uint32_t vni) {
  std::shared_lock lock(cfg_mu_);
  std::vector<FdbRow> out;
  Vni* v = vni_by_id(vni);
  if (!v) return out;
  uint64_t now = now_ms();
  std::lock_guard fl(v->fdb_mu);
  for (auto& [mac, e] : v->fdb)
    if (e.is_static || now - e.seen_ms <= opt_.ageing_ms) out.push_back({mac, e});
  return out;
}

uint32_t Engine::add_punt_rule(const PuntRule& r) {
  std::unique_lock lock(cfg_mu_);
  return punt_.add(r);
}

bool Engine::remove_punt_rule(uint32_t id) {
  std::unique_lock lock(cfg_mu_);
  return punt_.remove(id);
}

Learn Engine::learn(Vni& v, const uint8_t* src, int port, uint32_t remote) {
  if (mac_is_group(src)) return Learn::kOk;
  uint64_t k = mac_key(src);
  uint64_t now = now_ms();
  std::lock_guard fl(v.fdb_mu);
  auto it = v.fdb.find(k);
  if (it == v.fdb.end()) {
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

void Engine::set_known_vteps(std::vector<uint32_t> vteps) {
  std::unique_lock lock(cfg_mu_);
  known_vteps_ = std::unordered_set<uint32_t>(vteps.begin(), vteps.end());
  vteps_enforced_ = true;
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
    // Items due: their entry expired (erase), was refreshed since (queue it again at its last sighting), or is
    // gone, static now or queued again meanwhile (a stale item: drop it).
    while (!v->ageing.empty() && now - v->ageing.front().second > opt_.ageing_ms) {
      auto [mac, queued] = v->ageing.front();
      v->ageing.pop_front();
      auto it = v->fdb.find(mac);
      if (it == v->fdb.end() || it->second.is_static || it->second.queued_ms != queued) continue;
      if (now - it->second.seen_ms > opt_.ageing_ms) {
        v->fdb.erase(it);
      } else {
        it->second.queued_ms = it->second.seen_ms;
        v->ageing.emplace_back(mac, it->second.seen_ms);
      }
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
    else if (in) in->c.drop(kDropNoDestination);
    return;
  }
  if (!captures_.empty() && (known || !v.flood.empty()))
    captures_.offer(kCapVniEncap, kCapOut, v.id, -1, frame, len);
  uint8_t* dgram = frame - kVxlanHdr;
  vxlan_write_header(dgram, v.id);
  int sock = int(flow_hash(frame, len) % kTxSockets);
  if (known) {
    emit(out, v, e.remote, sock, dgram, len + kVxlanHdr);
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
    emit(out, v, remote, sock, dgram, len + kVxlanHdr);
    sent = true;
  }
  if (!sent && in) in->c.drop(kDropNoDestination);
}

void Engine::emit(Sender& out, Vni& v, uint32_t remote, int sock, const uint8_t* dgram, size_t len) {
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
    v.c.drop(kDropNoSession);
    if (p) {
      p->c.drop(kLinkDropNoSession);
      p->want_session.store(true, std::memory_order_relaxed);
    }
    return;
  }
  uint64_t ctr = s->send_ctr.fetch_add(1, std::memory_order_relaxed);
  if (ctr >= link::kRejectAfterMessages) {
    v.c.drop(kDropNoSession);
    p->c.drop(kLinkDropCounterExhausted);
    return;
  }
  uint8_t* msg = out.link_buffer();
  size_t n = link::seal(s->send_key, s->remote_idx, ctr, dgram, len, msg);
  p->c.tx_packets.fetch_add(1, std::memory_order_relaxed);
  p->c.tx_bytes.fetch_add(n, std::memory_order_relaxed);
  p->last_tx_ms.store(now, std::memory_order_relaxed);
  if (!captures_.empty())
    captures_.offer_wire(kCapOut, v.id, opt_.underlay_ip, opt_.link_port, p->endpoint_ip(), p->endpoint_port(), msg, n);
  out.to_link(p->endpoint_ip(), p->endpoint_port(), msg, n, &v);
}

void Engine::count_filtered(Port& p) {
  p.c.drop(kDropFiltered);
  if (Vni* v = vni_by_id(p.vni)) v->c.drop(kDropFiltered);
}

void Engine::deliver_to_port(Port& p, uint8_t* frame, size_t len, Sender& out, TapGro* gro) {
  // Before anything else, and so before the frame can join a super-frame below.
  if (!filter_passes(p, frame, len, FilterDir::kReceive)) return;
  if (len > size_t(p.mtu) + kEthHdr) {
    p.c.drop(kDropOversize);
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
      GroStep st = gro_offer(s->frame, frame, len, [&] { gro_write(*gro, *s); });
      if (st.kind != GroStep::kPassed) {
        s->port = &p;
        return;
      }
    }
  }
  if (write_port(p, frame, len)) p.c.tx(len);
  else p.c.drop(kDropQueueFull);
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
  iovec iov[2] = {{&h, sizeof(h)}, {const_cast<uint8_t*>(s.frame.data()), n}};
  if (writev(p.fd, iov, 2) >= 0) {
    p.c.tx(bytes, count);
    if (count > 1) {
      p.gro_merged.fetch_add(count, std::memory_order_relaxed);
      p.gro_writes.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (count > 1 && (g.refused || (errno != EAGAIN && errno != ENOBUFS))) {
    // The TAP would not take the super-frame: cut it back into the segments it was made of
    // (offload.h recreates their ids, checksums and flags) and stop coalescing on this thread.
    if (!g.refused) gro_fallbacks_.fetch_add(1, std::memory_order_relaxed);
    g.refused = true;
    Tcp4Gso t;
    tcp4_gso_parse(s.frame.data(), n, h.gso_size, &t);
    for (size_t i = 0; i < t.count; i++) {
      size_t sl = tcp4_gso_segment(t, i, g.scratch.get());
      if (write_port(p, g.scratch.get(), sl)) p.c.tx(sl);
      else p.c.drop(kDropQueueFull);
    }
  } else {
    p.c.drop(kDropQueueFull, count);
  }
  s.frame.clear();
}

bool Engine::write_port(Port& p, const uint8_t* data, size_t len) {
  if (!p.vnet) return write(p.fd, data, len) >= 0;
  // No offload on the way in: the frame is complete, the kernel verifies its checksums.
  static const uint8_t kPlainHdr[10] = {};
  iovec iov[2] = {{const_cast<uint8_t*>(kPlainHdr), sizeof(kPlainHdr)}, {const_cast<uint8_t*>(data), len}};
  return writev(p.fd, iov, 2) >= 0;
}

// Frames the control plane hands in (services' answers, replays) are at least an Ethernet header and at most
// a jumbo frame: every later stage reads the header without checking again.
static void check_inject_len(size_t len) {
  if (len < kEthHdr || len > 65535)
    throw std::invalid_argument("frame of " + std::to_string(len) + " bytes: an injected frame is 14 to 65535 bytes");
}

void Engine::inject_to_port(int id, const uint8_t* frame, size_t len) {
  std::shared_lock lock(cfg_mu_);
  Port* p = port_by_id(id);
  if (!p) throw std::invalid_argument("port " + std::to_string(id) + " does not exist");
  check_inject_len(len);
  std::vector<uint8_t> buf = with_headroom(frame, len);
  ImmediateSender out(tx_fds_, opt_.underlay_port, link_fd_);
  deliver_to_port(*p, buf.data() + kVxlanHdr, len, out);
}

void Engine::inject_to_vni(uint32_t vni, const uint8_t* frame, size_t len) {
  std::shared_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  check_inject_len(len);
  std::vector<uint8_t> buf = with_headroom(frame, len);
  ImmediateSender out(tx_fds_, opt_.underlay_port, link_fd_);
  forward_from_local(*v, nullptr, buf.data() + kVxlanHdr, len, out);
}

void Engine::link_add_peer(uint32_t vtep, uint32_t ip, uint16_t port) {
  std::unique_lock lock(cfg_mu_);
  links_.add_peer(vtep, ip, port);
}

bool Engine::link_remove_peer(uint32_t vtep) {
  std::unique_lock lock(cfg_mu_);
  return links_.remove_peer(vtep);
}

void Engine::link_install(uint32_t vtep, uint32_t local_idx, uint32_t remote_idx, const uint8_t* send_key,
                          const uint8_t* recv_key, bool initiator) {
  std::unique_lock lock(cfg_mu_);
  links_.install(vtep, local_idx, remote_idx, send_key, recv_key, initiator, now_ms());
}

void Engine::link_expire() {
  std::unique_lock lock(cfg_mu_);
  links_.expire(now_ms());
}

bool Engine::link_keepalive(uint32_t vtep) {
  std::shared_lock lock(cfg_mu_);
  LinkPeer* p = links_.peer(vtep);
  uint64_t now = now_ms();
  LinkSession* s = p ? p->sendable(now) : nullptr;
  if (!s) return false;
  uint64_t ctr = s->send_ctr.fetch_add(1, std::memory_order_relaxed);
  if (ctr >= link::kRejectAfterMessages) return false;
  uint8_t msg[link::kOverhead];
  size_t n = link::seal(s->send_key, s->remote_idx, ctr, msg + link::kHeader, 0, msg);
  ImmediateSender out(tx_fds_, opt_.underlay_port, link_fd_);
  if (!captures_.empty())
    captures_.offer_wire(kCapOut, 0, opt_.underlay_ip, opt_.link_port, p->endpoint_ip(), p->endpoint_port(), msg, n);
  out.to_link(p->endpoint_ip(), p->endpoint_port(), msg, n, nullptr);
  p->c.keepalives_tx.fetch_add(1, std::memory_order_relaxed);
  p->last_tx_ms.store(now, std::memory_order_relaxed);
  return true;
}

void Engine::link_send(uint32_t ip, uint16_t port, const uint8_t* data, size_t len) {
  if (link_fd_ < 0) throw std::invalid_argument("links are disabled");
  {
    std::shared_lock lock(cfg_mu_);
    if (!captures_.empty()) captures_.offer_wire(kCapOut, 0, opt_.underlay_ip, opt_.link_port, ip, port, data, len);
  }
  sockaddr_in a = vtep_addr(ip, port);
  if (sendto(link_fd_, data, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0)
    sys_fail("link send to " + ip_str(ip) + ":" + std::to_string(port));
}

uint16_t Engine::link_port() const {
  if (link_fd_ < 0) return 0;
  sockaddr_in a{};
  socklen_t l = sizeof(a);
  getsockname(link_fd_, reinterpret_cast<sockaddr*>(&a), &l);
  return ntohs(a.sin_port);
}

void Engine::inject_from_port(int id, const uint8_t* frame, size_t len) {
  std::shared_lock lock(cfg_mu_);
  Port* p = port_by_id(id);
  if (!p) throw std::invalid_argument("port " + std::to_string(id) + " does not exist");
  Vni* v = vni_by_id(p->vni);
  if (!v) throw std::invalid_argument("port " + std::to_string(id) + " has no VNI");
  if (len < kEthHdr || len > size_t(v->mtu) + kEthHdr)
    throw std::invalid_argument("frame of " + std::to_string(len) + " bytes does not fit the port (MTU " + std::to_string(v->mtu) + ")");
  std::vector<uint8_t> buf = with_headroom(frame, len);
  uint8_t* f = buf.data() + kVxlanHdr;
  p->c.rx(len);
  if (!captures_.empty()) captures_.offer(kCapPort, kCapIn, v->id, p->id, f, len);
  if (!filter_passes(*p, f, len, FilterDir::kSend)) return;
  if (punt_frame(v->id, p->id, 0, f, len)) return;
  ImmediateSender out(tx_fds_, opt_.underlay_port, link_fd_);
  forward_from_local(*v, p, f, len, out);
}

uint32_t Engine::capture_add(CaptureSpec spec) {
  std::unique_lock lock(cfg_mu_);
  return captures_.add(std::move(spec));
}

bool Engine::capture_remove(uint32_t id) {
  std::unique_lock lock(cfg_mu_);
  return captures_.remove(id);
}

std::shared_ptr<CaptureSession> Engine::capture(uint32_t id) {
  std::shared_lock lock(cfg_mu_);
  return captures_.find(id);
}

void Engine::send_datagram(uint32_t ip, uint16_t port, const uint8_t* data, size_t len) {
  sockaddr_in a = vtep_addr(ip, port);
  if (sendto(rx_fd_, data, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0)
    sys_fail("send to " + ip_str(ip) + ":" + std::to_string(port));
}

}  // namespace appnet
