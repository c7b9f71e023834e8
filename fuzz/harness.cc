#include "harness.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "../native/src/link_crypto.h"
#include "../native/src/memory_device.h"

namespace appnet::fuzz {
namespace {

uint16_t free_port(uint32_t ip) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t l = sizeof(a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &l);
  close(s);
  return ntohs(a.sin_port);
}

int bound(uint32_t ip, uint16_t port) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip);
  a.sin_port = htons(port);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0) throw std::runtime_error("fuzz: bind a sink");
  return s;
}

uint64_t mac64(const uint8_t m[6]) {
  uint64_t v = 0;
  for (int i = 0; i < 6; i++) v = v << 8 | m[i];
  return v;
}

}  // namespace

const uint8_t World::kLinkRecvKey[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                         17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

World::World(Options o) : buf_(70000) {
  EngineOptions eo;
  eo.underlay_ip = 0x7f000001;
  underlay_port = free_port(eo.underlay_ip);
  link_port = free_port(0);
  eo.underlay_port = underlay_port;
  eo.link_port = link_port;
  eo.fdb_limit = 64;  // small: the fuzzer reaches fdb_full and the ageing queue
  eo.ageing_ms = 1000;
  engine_ = std::make_unique<Engine>(eo);
  Engine& e = *engine_;
  sink_fd_ = bound(kPeer, underlay_port);
  peer_link_port_ = free_port(kPeer);
  link_sink_fd_ = bound(kPeer, peer_link_port_);

  e.add_vni(42, 1450);
  e.add_vni(44, 1450);
  e.add_vni(45, 1450, true);
  e.set_flood(42, {kPeer});
  e.set_flood(45, {kPeer});
  e.set_known_vteps({kPeer});

  Engine::PortSpec tap_spec;
  tap_spec.name = "tap";
  tap_spec.kind = DeviceKind::kTap;
  tap_spec.vni = 42;
  std::memcpy(tap_spec.mac, kTapMac, 6);
  tap_spec.mtu = 1450;
  tap_spec.memory = true;
  tap = e.add_port(tap_spec);

  Engine::PortSpec tun_spec = tap_spec;
  tun_spec.name = "tun";
  tun_spec.kind = DeviceKind::kTun;
  std::memcpy(tun_spec.mac, kTunMac, 6);
  tun_spec.ipv4 = kTunIp;
  tun = e.add_port(tun_spec);

  Engine::PortSpec f_spec = tap_spec;
  f_spec.name = "filtered";
  f_spec.vni = 44;
  std::memcpy(f_spec.mac, kFilteredMac, 6);
  f_spec.filtered = true;
  f_spec.filter.local = 0xc6122c02;
  f_spec.filter.peer = 0xc6122c03;
  f_spec.filter.proto = 6;
  f_spec.filter.port = 5201;
  f_spec.filter.inbound = false;
  filtered = e.add_port(f_spec);

  uplink_fd_ = e.set_uplink_memory(1500);
  auto nat = std::make_shared<nat::NatTable>(256, nat::Timeouts{}, 7);
  nat::SnatRule r;
  r.vni = 42;
  r.inside_net = 0xc6122a00;
  r.prefix = 24;
  r.external = kExternal;
  r.port_min = 20000;
  r.port_max = 20063;  // small: port exhaustion is reachable
  nat->add_snat(r);
  nat::FloatRule fl;
  fl.vni = 42;
  fl.inside = 0xc6122a04;
  fl.external = 0xc6126302;
  nat->add_float(fl);
  e.set_nat(nat);
  NatGateway g;
  g.ip = kGateway;
  g.net = 0xc6122a00;
  g.mask = 0xffffff00;
  std::memcpy(g.mac, kGatewayMac, 6);
  g.nat = true;
  e.set_gateway(42, g);
  e.add_neighbour(42, 0xc6122a02, mac64(kTapMac));
  e.add_routed(42, 0xc6122a80);
  e.add_fdb(42, mac64(kGatewayMac), -1, 0x7f000001);

  PuntRule arp;
  arp.ethertype = 0x0806;
  arp.consume = false;
  e.add_punt_rule(arp);
  PuntRule dhcp;
  dhcp.ip_proto = 17;
  dhcp.dst_port = 67;
  e.add_punt_rule(dhcp);
  PuntRule icmp;
  icmp.ip_proto = 1;
  icmp.dst_ip = kGateway;
  e.add_punt_rule(icmp);

  reset_link();

  if (o.captures) {
    for (const char* f : {"udp port 5201 or icmp", "tcp[tcpflags] & tcp-syn != 0", "vlan or arp or ip[6:2] & 0x1fff != 0"}) {
      CaptureSpec s;
      s.snaplen = 200;
      s.ring = 64;
      s.bpf = compile_filter(f, s.snaplen);
      captures_.push_back(e.capture_add(s));
    }
  }
  wire_ = std::make_unique<RxProbe>(e, false);
  link_ = std::make_unique<RxProbe>(e, true);
  tx_ = std::make_unique<TxProbe>(e);
}

World::~World() {
  wire_.reset();
  link_.reset();
  tx_.reset();
  engine_.reset();
  close(sink_fd_);
  close(link_sink_fd_);
}

void World::reset_link() {
  engine_->link_remove_peer(kPeer);
  engine_->link_add_peer(kPeer, kPeer, peer_link_port_);
  uint8_t send_key[32];
  std::memset(send_key, 0x5a, sizeof(send_key));
  engine_->link_install(kPeer, kLocalIdx, 0x55667788, send_key, kLinkRecvKey, false);
}

void World::drain() {
  for (int id : {tap, tun, filtered})
    while (recv(engine_->port_peer_fd(id), buf_.data(), buf_.size(), MSG_DONTWAIT) >= 0) {}
  for (int fd : {uplink_fd_, sink_fd_, link_sink_fd_})
    while (recv(fd, buf_.data(), buf_.size(), MSG_DONTWAIT) >= 0) {}
  engine_->punt().drain();
  for (uint32_t id : captures_)
    if (auto s = engine_->capture(id)) s->drain();
}

World& world(World::Options o) {
  static World* w = new World(o);  // never destroyed: libFuzzer exits without unwinding
  return *w;
}

std::vector<std::pair<const uint8_t*, size_t>> records(const uint8_t* d, size_t n, size_t max_records) {
  std::vector<std::pair<const uint8_t*, size_t>> out;
  while (n > 0 && out.size() < max_records) {
    if (n < 2) {
      out.emplace_back(d, n);
      break;
    }
    size_t len = size_t(d[0]) << 8 | d[1];
    d += 2;
    n -= 2;
    if (len > n) len = n;
    out.emplace_back(d, len);
    d += len;
    n -= len;
  }
  return out;
}

std::vector<uint8_t> vxlan(uint32_t vni, const uint8_t* frame, size_t len) {
  std::vector<uint8_t> d(kVxlanHdr + len);
  d[0] = 0x08;
  d[4] = uint8_t(vni >> 16);
  d[5] = uint8_t(vni >> 8);
  d[6] = uint8_t(vni);
  if (len) std::memcpy(d.data() + kVxlanHdr, frame, len);
  return d;
}

}  // namespace appnet::fuzz
