// The NAT stage between a NAT network's VNI and the uplink TUN (docs/nat.md "Uplink and network node").
//
//  egress  frame on a NAT VNI (local port or wire) to the gateway MAC, IPv4 destination outside the
//          netblock and not a routed address of the network -> nat::translate(kEgress) -> IP packet
//          written to the uplink (no uplink: `no_uplink`; refused by the table: `nat`, reason in its stats;
//          larger than the uplink's MTU with DF set: `oversize`, answered with ICMP "fragmentation needed")
//  ingress IP packet read from the uplink (TX thread, see engine_tx.cc) -> nat::translate(kIngress):
//          translated -> verdict.vni; passthrough -> the VNI that routes the destination, if any ->
//          Ethernet header (src gateway MAC, dst from the VNI's neighbour table) -> switched in the VNI
//
// Offload (EngineOptions::uplink_offload): the TUN is opened with IFF_VNET_HDR and TSO4, as TAP ports are.
// A TCP super-frame from a TAP goes through NAT once and out whole (nat_egress_gso): the host kernel
// segments it, or forwards it whole to a NIC that can. The kernel hands us super-packets the same way; one
// is translated once and written whole into the instance's TAP (deliver_super_frame), or segmented when
// it must be switched onwards frame by frame. A partial TCP checksum is recomputed after the rewrite.
//
// No JS per packet: the tables are installed by the control module (control/services/nat-service.ts).
#include "uplink.h"

#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include <cstring>
#include <stdexcept>

#include "engine.h"
#include "memory_device.h"

namespace appnet {

void Engine::set_uplink(const std::string& name, int mtu) {
  int fd = -1;
  if (!name.empty()) {
    // Opened outside the lock: netlink calls may take milliseconds.
    fd = device_open(DeviceKind::kTun, name, opt_.uplink_offload);
    try {
      device_set_mtu(name, mtu);
      device_set_up(name, true);
    } catch (...) {
      close(fd);
      throw;
    }
  }
  install_uplink(fd, -1, mtu, name, fd >= 0 && opt_.uplink_offload);
}

int Engine::set_uplink_memory(int mtu) {
  MemoryDevice m = memory_device_open();
  install_uplink(m.engine_fd, m.peer_fd, mtu, "memory uplink", false);
  return m.peer_fd;
}

void Engine::install_uplink(int fd, int peer_fd, int mtu, const std::string& name, bool vnet) {
  std::unique_lock lock(cfg_mu_);
  if (uplink_fd_ >= 0) {
    epoll_ctl(epfds_[0], EPOLL_CTL_DEL, uplink_fd_, nullptr);
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
  if (epoll_ctl(epfds_[0], EPOLL_CTL_ADD, fd, &ev) < 0) {
    close(fd);
    if (peer_fd >= 0) close(peer_fd);
    throw std::runtime_error(name + ": epoll_ctl failed");
  }
  uplink_fd_ = fd;
  uplink_peer_fd_ = peer_fd;
  uplink_mtu_ = mtu;
  uplink_vnet_ = vnet;
  uplink_gso_.store(vnet, std::memory_order_relaxed);
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

namespace {

// A frame for the uplink: to the gateway MAC, IPv4, to an address off the network that no instance
// of this VNI holds as a routed address.
bool uplink_bound(const Vni& v, const std::unordered_map<uint32_t, uint32_t>& routed, const uint8_t* frame,
                  size_t len) {
  const NatGateway& g = v.gw;
  if (!g.nat || len < kEthHdr + 20 || std::memcmp(frame, g.mac, 6) != 0 || rd16(frame + 12) != kEtherIpv4)
    return false;
  uint32_t dst = rd32(frame + kEthHdr + 16);
  if ((dst & g.mask) == g.net) return false;  // on-net: the switch's business (or the services')
  if (routed.empty()) return true;
  auto it = routed.find(dst);
  return it == routed.end() || it->second != v.id;  // else an instance holds it here
}

// A routed address is held by whichever instance configured it: learn which one from its traffic.
void learn_routed_holder(Vni& v, const std::unordered_map<uint32_t, uint32_t>& routed, const uint8_t* frame) {
  if (routed.empty()) return;
  uint32_t src = rd32(frame + kEthHdr + 12);
  auto it = routed.find(src);
  if (it == routed.end() || it->second != v.id) return;
  std::lock_guard fl(v.fdb_mu);
  v.neigh[src] = mac_key(frame + 6);
}

}  // namespace

bool Engine::nat_egress(Vni& v, Port* in, uint8_t* frame, size_t len) {
  if (!uplink_bound(v, routed_, frame, len)) return false;
  uint8_t* ip = frame + kEthHdr;
  size_t n = ipv4_packet_len(ip, len - kEthHdr);
  if (!n) { v.counters.drop(kDropMalformed); return true; }
  learn_routed_holder(v, routed_, frame);
  if (uplink_fd_ < 0) { v.counters.drop(kDropNoUplink); return true; }
  if (n > size_t(uplink_mtu_) && (ip[6] & 0x40)) {
    // DF and too big for the uplink: the sender must lower its path MTU. Without DF the kernel fragments.
    uplink_c_.drop(kDropOversize);
    if (in) {
      reply_frag_needed(*in, frame, len, uplink_mtu_);
      return true;
    }
    // Off the wire: back over the overlay to the sender's host, sent at once (a reply is rare).
    uint8_t reply[kVxlanHdr + kFragNeededMax];
    if (size_t r = frag_needed_frame(frame, len, uplink_mtu_, reply + kVxlanHdr)) {
      ImmediateSender now(tx_fds_, opt_.underlay_port, link_fd_);
      forward_from_local(v, nullptr, reply + kVxlanHdr, r, now);
    }
    return true;
  }
  if (nat_) {
    nat::Verdict r = nat_->translate(nat::Dir::kEgress, v.id, ip, n, now_ms());
    if (r.action == nat::Action::kDrop) { v.counters.drop(kDropNat); return true; }
  }
  uplink_write(ip, n);
  return true;
}

Engine::UplinkGso Engine::nat_egress_gso(Vni& v, Port& in, uint8_t* frame, size_t len, const Tcp4Gso& g) {
  if (!uplink_gso_.load(std::memory_order_relaxed) || !uplink_bound(v, routed_, frame, len))
    return UplinkGso::kNotUplink;
  uint8_t* ip = frame + kEthHdr;
  size_t n = len - kEthHdr;
  if (ipv4_packet_len(ip, n) != n) return UplinkGso::kNotUplink;  // padded or short: judged segment by segment
  in.counters.rx(len, g.count);
  learn(v, frame + 6, in.id, 0);
  learn_routed_holder(v, routed_, frame);
  if (nat_) {
    nat::Verdict r = nat_->translate(nat::Dir::kEgress, v.id, ip, n, now_ms());
    if (r.action == nat::Action::kDrop) { v.counters.drop(kDropNat, g.count); return UplinkGso::kSent; }
  }
  tcp4_set_partial_csum(ip, g.ihl, n);
  VnetHdr h = tcp4_gso_vnet_hdr(g, 0);
  iovec iov[2] = {{&h, sizeof(h)}, {ip, n}};
  if (writev(uplink_fd_, iov, 2) >= 0) {
    uplink_c_.tx(n, g.count);
    uplink_gso_writes_.fetch_add(1, std::memory_order_relaxed);
    return UplinkGso::kSent;
  }
  if (errno == EAGAIN || errno == ENOBUFS) {
    uplink_c_.drop(kDropQueueFull, g.count);
    return UplinkGso::kSent;
  }
  uplink_gso_.store(false, std::memory_order_relaxed);  // this kernel will not take super-packets: segments from now on
  uplink_gso_fallbacks_.fetch_add(1, std::memory_order_relaxed);
  return UplinkGso::kRefused;
}

bool Engine::uplink_write(const uint8_t* ip, size_t n) {
  bool ok;
  if (uplink_vnet_) {
    static const VnetHdr kComplete{};  // no offload asked: the packet's checksums are complete
    iovec iov[2] = {{const_cast<VnetHdr*>(&kComplete), sizeof(kComplete)}, {const_cast<uint8_t*>(ip), n}};
    ok = writev(uplink_fd_, iov, 2) >= 0;
  } else {
    ok = write(uplink_fd_, ip, n) >= 0;
  }
  if (ok) uplink_c_.tx(n);
  else uplink_c_.drop(kDropQueueFull);
  return ok;
}

Vni* Engine::uplink_route(uint8_t* ip, size_t n, size_t seg_len, uint64_t* mac) {
  uint32_t vni = 0;
  bool found = false;
  if (nat_) {
    nat::Verdict r = nat_->translate(nat::Dir::kIngress, 0, ip, n, now_ms());
    if (r.action == nat::Action::kDrop) { uplink_c_.drop(kDropNat); return nullptr; }
    if (r.action == nat::Action::kTranslated) { vni = r.vni; found = true; }
  }
  uint32_t dst = rd32(ip + 16);
  if (!found) {
    auto it = routed_.find(dst);
    if (it == routed_.end()) { uplink_c_.drop(kDropNoDestination); return nullptr; }
    vni = it->second;
  }
  Vni* v = vni_by_id(vni);
  if (!v || !v->gw.nat) { uplink_c_.drop(kDropUnknownVni); return nullptr; }
  if (seg_len > size_t(v->mtu)) { uplink_c_.drop(kDropOversize); return nullptr; }
  std::lock_guard fl(v->fdb_mu);
  auto it = v->neigh.find(dst);
  if (it != v->neigh.end()) {
    *mac = it->second;
  } else if (!found) {
    // A routed address nobody has used yet: broadcast it, as IPv4 hosts accept unicast IP in a
    // broadcast frame; the holder's first answer teaches us its MAC (nat_egress).
    *mac = 0xffffffffffffull;
  } else {
    uplink_c_.drop(kDropNoNeighbour);
    return nullptr;
  }
  return v;
}

void Engine::uplink_ingress(uint8_t* ip, size_t len, Sender& out) {
  uplink_c_.rx(len);
  size_t n = ipv4_packet_len(ip, len);
  if (!n) { uplink_c_.drop(kDropMalformed); return; }  // IPv6 and runts: nothing of ours
  uint64_t mac;
  Vni* v = uplink_route(ip, n, n, &mac);
  if (!v) return;
  uint8_t* frame = ip - kEthHdr;
  uplink_frame(*v, frame, mac);
  forward_from_local(*v, nullptr, frame, kEthHdr + n, out);
}

}  // namespace appnet
