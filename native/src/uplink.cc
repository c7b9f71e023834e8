// The NAT stage between a NAT network's VNI and the uplink TUN (docs/nat.md "Uplink and network node").
//
//  egress  frame on a NAT VNI (local port or wire) to the gateway MAC, IPv4 destination outside the
//          netblock and not a routed address of the network -> nat::translate(kEgress) -> IP packet
//          written to the uplink (no uplink: `no_uplink`; refused by the table: `nat`, reason in its stats)
//  ingress IP packet read from the uplink (TX thread, see engine_tx.cc) -> nat::translate(kIngress):
//          translated -> verdict.vni; passthrough -> the VNI that routes the destination, if any ->
//          Ethernet header (src gateway MAC, dst from the VNI's neighbour table) -> switched in the VNI
//
// No JS per packet: the tables are installed by the control module (control/services/nat-service.ts).
#include "uplink.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "engine.h"
#include "memory_device.h"

namespace appnet {

void Engine::set_uplink(const std::string& name, int mtu) {
  int fd = -1;
  if (!name.empty()) {
    // Opened outside the lock: netlink calls may take milliseconds.
    fd = device_open(DeviceKind::kTun, name, false);
    try {
      device_set_mtu(name, mtu);
      device_set_up(name, true);
    } catch (...) {
      close(fd);
      throw;
    }
  }
  install_uplink(fd, -1, mtu, name);
}

int Engine::set_uplink_memory(int mtu) {
  MemoryDevice m = memory_device_open();
  install_uplink(m.engine_fd, m.peer_fd, mtu, "memory uplink");
  return m.peer_fd;
}

void Engine::install_uplink(int fd, int peer_fd, int mtu, const std::string& name) {
  std::unique_lock lock(cfg_mu_);
  if (uplink_fd_ >= 0) {
    epoll_ctl(epfd_, EPOLL_CTL_DEL, uplink_fd_, nullptr);
    close(uplink_fd_);
    uplink_fd_ = -1;
  }
  if (uplink_peer_fd_ >= 0) {
    close(uplink_peer_fd_);
    uplink_peer_fd_ = -1;
  }
  if (fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kUplinkEpollKey;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    close(fd);
    if (peer_fd >= 0) close(peer_fd);
    throw std::runtime_error(name + ": epoll_ctl failed");
  }
  uplink_fd_ = fd;
  uplink_peer_fd_ = peer_fd;
  uplink_mtu_ = mtu;
}

void Engine::set_nat(std::shared_ptr<nat::NatTable> t) {
  std::unique_lock lock(cfg_mu_);
  nat_ = std::move(t);
}

void Engine::set_gateway(uint32_t vni, const NatGateway& g) {
  std::unique_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  if (g.ip && (g.net & ~g.mask))
    throw std::invalid_argument("gateway of VNI " + std::to_string(vni) + ": netblock has host bits set");
  v->gw = g;
}

void Engine::add_neighbour(uint32_t vni, uint32_t ip, uint64_t mac) {
  std::shared_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  std::lock_guard fl(v->fdb_mu);
  v->neigh[ip] = mac;
}

bool Engine::remove_neighbour(uint32_t vni, uint32_t ip) {
  std::shared_lock lock(cfg_mu_);
  Vni* v = vni_by_id(vni);
  if (!v) return false;
  std::lock_guard fl(v->fdb_mu);
  return v->neigh.erase(ip) > 0;
}

void Engine::add_routed(uint32_t vni, uint32_t ip) {
  std::unique_lock lock(cfg_mu_);
  if (!vni_by_id(vni)) throw std::invalid_argument("VNI " + std::to_string(vni) + " does not exist");
  routed_[ip] = vni;
}

bool Engine::remove_routed(uint32_t ip) {
  std::unique_lock lock(cfg_mu_);
  return routed_.erase(ip) > 0;
}

void Engine::nat_sweep() {
  std::shared_lock lock(cfg_mu_);
  if (nat_) nat_->sweep(now_ms());
}

bool Engine::nat_egress(Vni& v, uint8_t* frame, size_t len) {
  const NatGateway& g = v.gw;
  if (!g.nat || len < kEthHdr + 20 || std::memcmp(frame, g.mac, 6) != 0 || rd16(frame + 12) != kEtherIpv4)
    return false;
  uint8_t* ip = frame + kEthHdr;
  uint32_t dst = rd32(ip + 16);
  if ((dst & g.mask) == g.net) return false;  // on-net: the switch's business (or the services')
  if (!routed_.empty()) {
    auto it = routed_.find(dst);
    if (it != routed_.end() && it->second == v.id) return false;  // an instance holds it here
  }
  size_t n = ipv4_packet_len(ip, len - kEthHdr);
  if (!n) { v.counters.drop(kDropMalformed); return true; }
  if (!routed_.empty()) {
    // A routed address is held by whichever instance configured it: learn which one from its traffic.
    uint32_t src = rd32(ip + 12);
    auto it = routed_.find(src);
    if (it != routed_.end() && it->second == v.id) {
      std::lock_guard fl(v.fdb_mu);
      v.neigh[src] = mac_key(frame + 6);
    }
  }
  if (uplink_fd_ < 0) { v.counters.drop(kDropNoUplink); return true; }
  if (nat_) {
    nat::Verdict r = nat_->translate(nat::Dir::kEgress, v.id, ip, n, now_ms());
    if (r.action == nat::Action::kDrop) { v.counters.drop(kDropNat); return true; }
  }
  if (write(uplink_fd_, ip, n) >= 0) uplink_c_.tx(n);
  else uplink_c_.drop(kDropQueueFull);
  return true;
}

void Engine::uplink_ingress(uint8_t* ip, size_t len, Sender& out) {
  uplink_c_.rx(len);
  size_t n = ipv4_packet_len(ip, len);
  if (!n) { uplink_c_.drop(kDropMalformed); return; }  // IPv6 and runts: nothing of ours
  uint32_t vni = 0;
  bool found = false;
  if (nat_) {
    nat::Verdict r = nat_->translate(nat::Dir::kIngress, 0, ip, n, now_ms());
    if (r.action == nat::Action::kDrop) { uplink_c_.drop(kDropNat); return; }
    if (r.action == nat::Action::kTranslated) { vni = r.vni; found = true; }
  }
  uint32_t dst = rd32(ip + 16);
  if (!found) {
    auto it = routed_.find(dst);
    if (it == routed_.end()) { uplink_c_.drop(kDropNoDestination); return; }
    vni = it->second;
  }
  Vni* v = vni_by_id(vni);
  if (!v || !v->gw.nat) { uplink_c_.drop(kDropUnknownVni); return; }
  if (n > size_t(v->mtu)) { uplink_c_.drop(kDropOversize); return; }
  uint64_t mac;
  {
    std::lock_guard fl(v->fdb_mu);
    auto it = v->neigh.find(dst);
    if (it != v->neigh.end()) {
      mac = it->second;
    } else if (!found) {
      // A routed address nobody has used yet: broadcast it, as IPv4 hosts accept unicast IP in a
      // broadcast frame; the holder's first answer teaches us its MAC (nat_egress).
      mac = 0xffffffffffffull;
    } else {
      uplink_c_.drop(kDropNoNeighbour);
      return;
    }
  }
  uint8_t* frame = ip - kEthHdr;
  mac_write(frame, mac);
  std::memcpy(frame + 6, v->gw.mac, 6);
  wr16(frame + 12, kEtherIpv4);
  forward_from_local(*v, nullptr, frame, kEthHdr + n, out);
}

}  // namespace appnet
