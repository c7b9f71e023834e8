// Ports: a TAP or TUN device (made inside the instance's namespace, with one queue per TX pipeline), or a
// memory device, registered with the TX pipelines' epoll sets. See device.h and docs/engine-threads.md.
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "engine.h"
#include "memory_device.h"

namespace appnet {
namespace {

[[noreturn]] void epoll_fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

int Engine::add_port(const PortSpec& s) {
  {
    std::shared_lock lock(cfg_mu_);
    if (!vni_by_id(s.vni))
      throw std::invalid_argument("port " + s.name + ": VNI " + std::to_string(s.vni) + " does not exist");
  }
  // Device set-up happens outside the lock: it may take milliseconds (netlink, setns).
  bool offload = s.kind == DeviceKind::kTap && opt_.tap_offload;
  std::vector<int> fds;  // one per queue: memory ports have one, devices one per TX pipeline
  int peer_fd = -1;
  auto close_fds = [&] {
    for (int fd : fds) close(fd);
    if (peer_fd >= 0) close(peer_fd);
  };
  if (s.memory) {
    MemoryDevice m = memory_device_open();
    fds = {m.engine_fd};
    peer_fd = m.peer_fd;
  } else if (!s.netns.empty()) {
    fds = device_open_in_netns(s.kind, s.name, offload, opt_.threads, s.mac, s.mtu, s.addresses, s.netns);
  } else {
    fds = device_open_queues(s.kind, s.name, offload, opt_.threads);
    try {
      if (s.kind == DeviceKind::kTap) device_set_mac(s.name, s.mac);
      device_set_mtu(s.name, s.mtu);
      device_set_ipv4(s.name, s.addresses);
      device_set_up(s.name, true);
    } catch (...) {
      close_fds();
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
  p->fd = fds[0];
  p->queue_fds.assign(fds.begin() + 1, fds.end());
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
  for (size_t q = 0; q < fds.size(); q++) {
    if (epoll_ctl(epfds_[q], EPOLL_CTL_ADD, fds[q], &ev) == 0) continue;
    int err = errno;
    for (size_t r = 0; r < q; r++) epoll_ctl(epfds_[r], EPOLL_CTL_DEL, fds[r], nullptr);
    close_fds();
    errno = err;
    epoll_fail("epoll_ctl add " + s.name);
  }
  v->ports.push_back(id);
  ports_[id] = std::move(p);
  return id;
}

void Engine::remove_port(int id) {
  std::unique_lock lock(cfg_mu_);
  Port* p = port_by_id(id);
  if (!p) throw std::invalid_argument("port " + std::to_string(id) + " does not exist");
  epoll_ctl(epfds_[0], EPOLL_CTL_DEL, p->fd, nullptr);
  for (size_t q = 0; q < p->queue_fds.size(); q++) epoll_ctl(epfds_[q + 1], EPOLL_CTL_DEL, p->queue_fds[q], nullptr);
  if (Vni* v = vni_by_id(p->vni)) {
    auto& ps = v->ports;
    for (auto it = ps.begin(); it != ps.end(); ++it) if (*it == id) { ps.erase(it); break; }
    std::lock_guard fl(v->fdb_mu);
    for (auto it = v->fdb.begin(); it != v->fdb.end();)
      it = it->second.port == id ? v->fdb.erase(it) : std::next(it);
  }
  close(p->fd);
  for (int fd : p->queue_fds) close(fd);
  if (p->peer_fd >= 0) close(p->peer_fd);
  ports_[id].reset();
}

int Engine::port_peer_fd(int id) {
  std::shared_lock lock(cfg_mu_);
  Port* p = port_by_id(id);
  if (!p) throw std::invalid_argument("port " + std::to_string(id) + " does not exist");
  return p->peer_fd;
}

}  // namespace appnet
