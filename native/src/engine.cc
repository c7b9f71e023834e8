// Engine setup and the configuration calls from JS (VNIs, FDB, punt rules, links, captures, injection); ports are
// in ports.cc.
// The switch both pipelines share is in switch.cc; the pipelines in engine_tx.cc and engine_rx.cc.
#include "engine.h"

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

int udp_socket(uint32_t ip, uint16_t port, int buf_bytes, bool reuseport = false) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) sys_fail("udp socket");
  int one = 1;
  // One socket per RX pipeline on the same port: the kernel spreads datagrams by their 4-tuple, so one
  // flow (one outer source port) always lands on one pipeline. Only the same user may join the group.
  if (reuseport) setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
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
    v.counters.drop(errno == EMSGSIZE ? kDropOversize : kDropQueueFull);
  else
    v.counters.tx(len);
}

uint8_t* ImmediateSender::link_buffer() {
  if (!buf_) buf_.reset(new uint8_t[kSlotSize + link::kOverhead]);
  return buf_.get();
}

void ImmediateSender::to_link(uint32_t ip, uint16_t port, const uint8_t* msg, size_t len, Vni* v) {
  sockaddr_in a = vtep_addr(ip, port);
  bool ok = sendto(link_fd_, msg, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) >= 0;
  if (!v) return;
  if (ok) v->counters.tx(len);
  else v->counters.drop(errno == EMSGSIZE ? kDropOversize : kDropQueueFull);
}

uint64_t Engine::now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

Engine::Engine(const EngineOptions& o) : opt_(o) {
  if (opt_.threads < 1 || opt_.threads > kMaxThreads)
    throw std::invalid_argument("threads must be 1.." + std::to_string(kMaxThreads));
  if (!opt_.cpus.empty()) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) sys_fail("sched_getaffinity");
    for (int c : opt_.cpus)
      if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed))
        throw std::invalid_argument("cpus: CPU " + std::to_string(c) + " is not one this process may run on");
  }
  int n = opt_.threads;
  bool reuse = n > 1;
  pipeline_c_.reset(new PipelineCounters[size_t(n)]);
  for (int& fd : tx_fds_) fd = -1;
  auto close_all = [&] {
    for (int fd : rx_fds_) close(fd);
    for (int fd : link_fds_) close(fd);
    for (int fd : tx_fds_) if (fd >= 0) close(fd);
    for (int fd : epfds_) close(fd);
    for (int fd : wake_fds_) close(fd);
  };
  try {
    int one = 1;
    for (int i = 0; i < n; i++) {
      rx_fds_.push_back(udp_socket(o.underlay_ip, o.underlay_port, 8 << 20, reuse));
      // Let the kernel coalesce runs of datagrams (the RX pipeline splits them); optional.
      if (o.udp_gro) setsockopt(rx_fds_.back(), SOL_UDP, 104 /* UDP_GRO */, &one, sizeof(one));
    }
    rx_fd_ = rx_fds_[0];
    if (o.link_port) {
      if (!link::init()) throw std::runtime_error("libsodium failed to initialise");
      // Any address: the link keeps working when this host's underlay address changes.
      for (int i = 0; i < n; i++) {
        link_fds_.push_back(udp_socket(0, o.link_port, 8 << 20, reuse));
        if (o.udp_gro) setsockopt(link_fds_.back(), SOL_UDP, 104 /* UDP_GRO */, &one, sizeof(one));
      }
      link_fd_ = link_fds_[0];
    }
    // Ephemeral ports last: the link port (51830) lies inside the kernel's ephemeral range, so a
    // TX socket bound first could take it and the link bind would fail.
    for (int& fd : tx_fds_) fd = udp_socket(o.underlay_ip, 0, 4 << 20);
    for (int i = 0; i < kTxSockets; i++) {
      sockaddr_in a{};
      socklen_t l = sizeof(a);
      getsockname(tx_fds_[i], reinterpret_cast<sockaddr*>(&a), &l);
      tx_ports_[i] = ntohs(a.sin_port);
    }
    for (int i = 0; i < n; i++) {
      int ep = epoll_create1(EPOLL_CLOEXEC);
      if (ep < 0) sys_fail("epoll_create1");
      epfds_.push_back(ep);
      int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (wake < 0) sys_fail("eventfd");
      wake_fds_.push_back(wake);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = ~uint64_t(0);
      if (epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) < 0) sys_fail("epoll_ctl wake");
    }
  } catch (...) {
    close_all();
    throw;
  }
}

Engine::~Engine() {
  stop();
  for (int fd : rx_fds_) close(fd);
  for (int fd : link_fds_) close(fd);
  for (int fd : tx_fds_) close(fd);
  for (int fd : epfds_) close(fd);
  for (int fd : wake_fds_) close(fd);
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
  for (int fd : wake_fds_) (void)!write(fd, &one, sizeof(one));
}

void Engine::stop() {
  if (running_.exchange(false)) {
    wake_tx();
    // The RX threads poll with a short timeout and see running_ == false.
    for (std::thread& t : threads_) if (t.joinable()) t.join();
    threads_.clear();
  }
  std::unique_lock lock(cfg_mu_);
  for (auto& p : ports_) {
    if (!p) continue;
    close(p->fd);
    for (int fd : p->queue_fds) close(fd);
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

void Engine::set_known_vteps(std::vector<uint32_t> vteps) {
  std::unique_lock lock(cfg_mu_);
  known_vteps_ = std::unordered_set<uint32_t>(vteps.begin(), vteps.end());
  vteps_enforced_ = true;
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
  p->counters.keepalives_tx.fetch_add(1, std::memory_order_relaxed);
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
  p->counters.rx(len);
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
