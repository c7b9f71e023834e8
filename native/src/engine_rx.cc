// RX pipeline: wire -> VXLAN -> switch -> port. Runs on one engine-owned thread.
// Function per step: run (1-2), split_coalesced (2), on_datagram (capture), vxlan_in (3-6), link_in (3a-3b),
// Engine::deliver_to_port and gro_flush (switch.cc, 6-7).
//
//  1. Wait: poll the underlay socket, with a timeout so that stop() is noticed.
//  2. Read: recvmmsg up to kBatch messages, each into its own 64 KiB slot, with its source
//     address. The socket has UDP_GRO: the kernel may coalesce a run of datagrams from one
//     sender into one message (the UDP_GRO control message gives the datagram size); it is
//     split here, so every later step sees single datagrams.
//  3. Decapsulate: clear VXLAN from an address that is not a known VTEP is dropped first (unknown_vtep);
//     then the VXLAN header and the inner frame are checked (wire.h vxlan_decap): malformed, truncated or
//     unknown-VNI datagrams are dropped and counted on the wire, as is a link peer's datagram for a VNI it
//     does not share (vni_not_shared).
//  4. Learn: the inner source MAC is learned at the outer source address (the remote VTEP); a static entry
//     never moves, and a frame claiming a live local port's MAC is dropped (mac_conflict).
//  5. Punt: frames matching a classifier are copied to the punt ring. On a NAT network, a frame to the
//     gateway MAC for an address off the network (sent by an instance on a host without the uplink) goes
//     through NAT egress here, as on the TX pipeline's step 5.
//  6. Switch: a known local destination is written to its device; broadcast, multicast and
//     unknown unicast go to every local port of the VNI; nothing is sent back to the wire
//     (split horizon: the sender already replicated to every VTEP). A port with a filter
//     (port_filter.h) takes only what it may receive; the check comes before step 7.
//  7. Coalesce (TAP ports with offloads): consecutive TCP segments of one flow to one port are
//     merged into a super-frame (gro.h) and written with one writev and a GSO virtio_net_hdr;
//     anything else flushes the port's super-frame first and is written as it is. Whatever is
//     pending is written at the end of the batch, before the lock is released.
// Steps 3-7 run with the configuration lock held shared. Nothing allocates per packet except a punted
// frame's copy in the punt ring (step 5, and 3b's handshake queue).
//
// A second instance of this pipeline, on its own thread, reads the encrypted link socket:
//  3a. Data messages: look the receiver index up, refuse expired sessions, check the replay
//      window, open (ChaCha20-Poly1305) in place, and only then mark the counter as seen. The
//      first message on a responder's new session promotes it; a source address that differs
//      from the peer's endpoint moves the endpoint (roaming). An empty plaintext is a keepalive;
//      anything else is a VXLAN datagram and continues at step 3, learnt at the peer's identity.
//  3b. Handshake messages (types 1-3) of their exact sizes, at most 20/s (burst 10) per source address, are
//      punted to JS, which runs the Noise handshake, through their own bounded queue (a flood never takes the
//      room of DHCP, ARP and ICMP punts); any other size is dropped as malformed here.
// Clear VXLAN for a VNI marked encrypted is dropped: only the link may carry it.
#include <arpa/inet.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "engine.h"
#include "pipeline_probe.h"

#ifndef UDP_GRO
#define UDP_GRO 104  // linux/udp.h; glibc headers may lack it
#endif

namespace appnet {

class RxPipeline {
  friend class RxProbe;

 public:
  static constexpr size_t kRxSlot = 65536;

  RxPipeline(Engine& e, bool link, int q = 0)
      : e_(e),
        link_(link),
        fd_(link ? (e.link_fds_.empty() ? -1 : e.link_fds_[size_t(q)]) : e.rx_fds_[size_t(q)]),
        count_(link ? &e.pipeline_c_[q].link_datagrams : &e.pipeline_c_[q].rx_datagrams),
        out_(e.tx_fds_, e.opt_.underlay_port, e.link_fd_),
        slots_(packet_buffer(size_t(kBatch) * kRxSlot)),
        gro_(e.opt_.tap_gro && e.opt_.tap_offload ? new TapGro() : nullptr) {
    if (gro_) gro_->udp = e.opt_.tap_gro_udp;
    for (int i = 0; i < kBatch; i++) {
      iov_[i] = {&slots_[size_t(i) * kRxSlot], kRxSlot};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &iov_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &addrs_[i];
    }
  }

  void run() {
    pollfd pfd{fd_, POLLIN, 0};
    while (e_.running_.load(std::memory_order_relaxed)) {
      if (poll(&pfd, 1, 200) <= 0) continue;
      for (;;) {
        for (int i = 0; i < kBatch; i++) {
          msgs_[i].msg_hdr.msg_namelen = sizeof(addrs_[i]);
          msgs_[i].msg_hdr.msg_control = ctrl_[i];
          msgs_[i].msg_hdr.msg_controllen = sizeof(ctrl_[i]);
        }
        int n = recvmmsg(fd_, msgs_, kBatch, MSG_DONTWAIT, nullptr);
        if (n <= 0) break;
        count_->fetch_add(uint64_t(n), std::memory_order_relaxed);
        {
          std::shared_lock lock(e_.cfg_mu_);
          for (int i = 0; i < n; i++) split_coalesced(i);
          if (gro_) e_.gro_flush(*gro_);
        }
        if (n < kBatch) break;
      }
    }
  }

 private:
  // Splits a GRO-coalesced message into its datagrams.
  void split_coalesced(int i) {
    msghdr& h = msgs_[i].msg_hdr;
    uint8_t* d = static_cast<uint8_t*>(iov_[i].iov_base);
    size_t len = msgs_[i].msg_len;
    uint32_t remote = ntohl(addrs_[i].sin_addr.s_addr);
    uint16_t rport = ntohs(addrs_[i].sin_port);
    if (h.msg_flags & MSG_TRUNC) {
      if (link_) {
        e_.links_.global().drop(kLinkDropMalformed);
      } else {
        e_.wire_.rx(len);
        e_.wire_.drop(kDropOversize);
      }
      return;
    }
    size_t seg = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int v;
        std::memcpy(&v, CMSG_DATA(c), sizeof(v));
        seg = size_t(v);
      }
    }
    if (seg == 0 || seg >= len) {
      on_datagram(d, len, remote, rport);
      return;
    }
    for (size_t off = 0; off < len; off += seg) on_datagram(d + off, len - off < seg ? len - off : seg, remote, rport);
  }

  void on_datagram(uint8_t* d, size_t len, uint32_t remote, uint16_t rport) {
    if (!e_.captures_.empty()) {
      // What arrived, before decryption or decapsulation; the VNI is known only for clear VXLAN.
      uint32_t vni = !link_ && len >= kVxlanHdr ? uint32_t(d[4]) << 16 | uint32_t(d[5]) << 8 | d[6] : 0;
      uint16_t lport = link_ ? e_.opt_.link_port : e_.opt_.underlay_port;
      e_.captures_.offer_wire(kCapIn, vni, remote, rport, e_.opt_.underlay_ip, lport, d, len);
    }
    if (link_) link_in(d, len, remote, rport);
    else vxlan_in(d, len, remote, false);
  }

  void link_in(uint8_t* d, size_t len, uint32_t src, uint16_t sport) {
    LinkCounters& g = e_.links_.global();
    if (len < 4 || d[1] || d[2] || d[3]) { g.drop(kLinkDropMalformed); return; }
    if (d[0] != link::kTypeData) {
      if (!link::handshake_size_ok(d[0], len)) { g.drop(kLinkDropMalformed); return; }  // wrong type or size: JS never sees it
      if (!hs_limit_.allow(src, Engine::now_ms())) { g.drop(kLinkDropHandshakeRate); return; }
      g.handshakes_rx.fetch_add(1, std::memory_order_relaxed);
      if (!e_.punt_.push_raw(Engine::kLinkPuntRule, src, sport, d, len)) g.drop(kLinkDropHandshakeQueueFull);
      return;
    }
    link::DataHeader h;
    if (!link::parse_data_header(d, len, &h)) { g.drop(kLinkDropMalformed); return; }
    LinkTable::Found f;
    if (!e_.links_.by_index(h.receiver, &f)) { g.drop(kLinkDropUnknownIndex); return; }
    LinkPeer& p = *f.peer;
    LinkSession& s = *f.session;
    uint64_t now = Engine::now_ms();
    if (s.expired(now)) { p.counters.drop(kLinkDropExpired); return; }
    if (!s.replay.check(h.counter)) { p.counters.drop(kLinkDropReplay); return; }
    long n = link::open(s.recv_key, d, len, d + link::kHeader);
    if (n < 0) { p.counters.drop(kLinkDropBadTag); return; }
    if (!s.replay.mark(h.counter)) { p.counters.drop(kLinkDropReplay); return; }
    if (p.next.load(std::memory_order_relaxed) == &s) LinkTable::promote(p, &s);
    uint64_t ep = LinkPeer::pack(src, sport);
    if (p.endpoint.load(std::memory_order_relaxed) != ep) {
      p.endpoint.store(ep, std::memory_order_relaxed);
      p.counters.roams.fetch_add(1, std::memory_order_relaxed);
    }
    p.last_rx_ms.store(now, std::memory_order_relaxed);
    p.counters.rx_packets.fetch_add(1, std::memory_order_relaxed);
    p.counters.rx_bytes.fetch_add(len, std::memory_order_relaxed);
    if (n == 0) {
      p.counters.keepalives_rx.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    vxlan_in(d + link::kHeader, size_t(n), p.vtep, true);
  }

  void vxlan_in(uint8_t* d, size_t len, uint32_t remote, bool via_link) {
    Counters& w = e_.wire_;
    w.rx(len);
    // Clear VXLAN only from known VTEPs, before anything reads it (a link peer is authenticated instead).
    if (!via_link && !e_.vtep_known(remote)) { w.drop(kDropUnknownVtep); return; }
    uint32_t vni;
    if (vxlan_decap(d, len, &vni) != DecapError::kNone) { w.drop(kDropMalformed); return; }
    Vni* v = e_.vni_by_id(vni);
    if (!v) { w.drop(kDropUnknownVni); return; }
    if (v->encrypted && !via_link) { w.drop(kDropUnencrypted); return; }
    // An authenticated peer sends only into VNIs both hosts carry: those whose flood list holds it.
    if (via_link && e_.vteps_enforced() && std::find(v->flood.begin(), v->flood.end(), remote) == v->flood.end()) {
      w.drop(kDropVniNotShared);
      return;
    }
    if (!e_.captures_.empty()) e_.captures_.offer(kCapVniDecap, kCapIn, vni, -1, d + kVxlanHdr, len - kVxlanHdr);
    uint8_t* frame = d + kVxlanHdr;
    size_t flen = len - kVxlanHdr;
    v->counters.rx(flen);
    Learn learnt = e_.learn(*v, frame + 6, -1, remote);
    if (learnt != Learn::kOk) { v->counters.drop(learnt == Learn::kFull ? kDropFdbFull : kDropMacConflict); return; }
    if (e_.punt_frame(vni, -1, remote, frame, flen)) return;
    if (v->gw.nat && e_.nat_egress(*v, nullptr, frame, flen)) return;  // off-net, from a host without the uplink

    FdbEntry fe;
    if (!mac_is_group(frame) && e_.lookup(*v, frame, &fe)) {
      Port* p = fe.port >= 0 ? e_.port_by_id(fe.port) : nullptr;
      if (p) e_.deliver_to_port(*p, frame, flen, out_, gro_.get());
      else v->counters.drop(kDropNoDestination);  // known to be remote: never hairpin
      return;
    }
    if (v->ports.empty()) { v->counters.drop(kDropNoDestination); return; }
    for (int pid : v->ports)
      if (Port* p = e_.port_by_id(pid)) e_.deliver_to_port(*p, frame, flen, out_, gro_.get());
  }

  Engine& e_;
  bool link_;
  int fd_;
  std::atomic<uint64_t>* count_;  // this pipeline's datagrams received (PipelineCounters)
  ImmediateSender out_;
  std::unique_ptr<uint8_t[]> slots_;
  std::unique_ptr<TapGro> gro_;  // null when coalescing is switched off
  HandshakeLimiter hs_limit_;    // the link pipeline's: handshake messages per source
  mmsghdr msgs_[kBatch];
  iovec iov_[kBatch];
  sockaddr_in addrs_[kBatch];
  alignas(cmsghdr) char ctrl_[kBatch][CMSG_SPACE(sizeof(int))];
};

void run_rx_pipeline(Engine& e, bool link, int q) {
  RxPipeline(e, link, q).run();
}

RxProbe::RxProbe(Engine& e, bool link) : p_(new RxPipeline(e, link)) {}
RxProbe::~RxProbe() = default;

void RxProbe::batch(const Datagram* d, size_t n) {
  RxPipeline& r = *p_;
  n = std::min(n, size_t(kBatch));
  std::shared_lock lock(r.e_.cfg_mu_);
  for (size_t i = 0; i < n; i++) {
    uint8_t* slot = &r.slots_[i * RxPipeline::kRxSlot];
    size_t len = std::min(d[i].len, RxPipeline::kRxSlot);
    if (len) std::memcpy(slot, d[i].data, len);
    r.on_datagram(slot, len, d[i].remote, d[i].remote_port);
  }
  if (r.gro_) r.e_.gro_flush(*r.gro_);
}

void run_tx_pipeline(Engine& e, int q);

// Names a pipeline thread (what top -H and /proc/PID/task/*/comm show) and pins it when cpus are set.
static void place_thread(std::thread& t, const char* kind, int q, const std::vector<int>& cpus) {
  char name[16];
  snprintf(name, sizeof(name), "appnet-%s%u", kind, unsigned(q) % 100u);  // at most 15 characters
  pthread_setname_np(t.native_handle(), name);
  if (cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpus[size_t(q) % cpus.size()], &set);
  pthread_setaffinity_np(t.native_handle(), sizeof(set), &set);  // checked in the constructor
}

void Engine::start() {
  if (running_.exchange(true)) return;
  for (int q = 0; q < opt_.threads; q++) {
    place_thread(threads_.emplace_back([this, q] { run_tx_pipeline(*this, q); }), "tx", q, opt_.cpus);
    place_thread(threads_.emplace_back([this, q] { run_rx_pipeline(*this, false, q); }), "rx", q, opt_.cpus);
    if (link_fd_ >= 0) place_thread(threads_.emplace_back([this, q] { run_rx_pipeline(*this, true, q); }), "link", q, opt_.cpus);
  }
}

}  // namespace appnet
