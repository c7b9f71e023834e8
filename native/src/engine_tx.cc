// TX pipeline: local ports (and the uplink) -> switch -> VXLAN -> wire. Runs on one engine-owned thread.
// Function per step: read_port/ingest (2), port_frame (3-5b), Engine::forward_from_local and send_to_vtep
// (switch.cc, 5c), BatchSender::flush (batch_sender.h, 6), read_uplink/uplink_packet (7), Engine::age_fdb and
// nat_sweep (8).
//
//  1. Wait: epoll on every port fd, the uplink TUN and the wake eventfd (stop, configuration change).
//  2. Read: up to kBatch reads per ready port into one ingress buffer. A TAP read starts with a
//     virtio_net_hdr: a TCP super-frame (TSO, up to 64 KiB) is cut into MSS-sized segments and
//     a partial checksum is completed (offload.h), so one read() carries up to ~45 frames. A super-frame
//     bound for the uplink through NAT skips the cut when no per-frame stage needs it
//     (super_frame_to_uplink): it is translated once and written to the uplink whole (uplink.cc).
//     Each frame or segment lands in its own slot, behind headroom for the VXLAN header (and for
//     TUN ports the synthesised Ethernet header, tun_port.cc), so encapsulation writes in place.
//  3. Check: runt frames are malformed; a port with a filter (port_filter.h) drops what it may
//     not send, segment by segment; frames above the VNI's MTU are oversize, and an IPv4
//     DF packet is answered with ICMP "fragmentation needed" (the sender lowers its PMTU).
//  4. Punt: frames matching a classifier are copied to the punt ring (and, if the rule
//     consumes them, go no further).
//  5. NAT and switch: on a NAT network, the source MAC is learnt and a frame to the gateway MAC for an
//     address off the network goes through NAT egress to the uplink TUN (uplink.cc, nat_translate.cc).
//     Anything else is switched: learn the source MAC on the port; a known local destination is written
//     to its device at once; a known remote goes to its VTEP (in clear, or sealed on the peer's link
//     session for an encrypted VNI); anything else floods to the VNI's other local ports and to every
//     VTEP in its flood list (head-end replication, sharing one slot).
//  6. Flush: datagrams are queued per source socket (the flow hash picks the socket, and so the
//     outer source port) and sent with one sendmmsg per socket per batch. Runs of equal-size
//     datagrams to the same VTEP (the segments of one super-frame) go as one UDP GSO message
//     (UDP_SEGMENT): the kernel carries them as one packet as far as it can. If the kernel
//     refuses GSO (EIO: no checksum offload on the way out), the engine sends them one by one.
//  7. Uplink: IPv4 packets the kernel routed into the uplink TUN go through NAT ingress (or to a routed
//     address), get an Ethernet header from the network's neighbour table, and are switched as in 5.
//     With offload, a TCP super-packet is translated once and written whole into the instance's TAP, or
//     cut into segments that are switched (uplink_super_packet).
//  8. Once a second, outside the lock: FDB ageing (what expired only) and the NAT table's sweep.
// Steps 2-7 run with the configuration lock held shared. Nothing allocates per packet except a punted
// frame's copy in the punt ring (step 4).
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include "batch_sender.h"
#include "engine.h"
#include "offload.h"
#include "pipeline_probe.h"
#include "uplink.h"

namespace appnet {

class TxPipeline {
  friend class TxProbe;

 public:
  explicit TxPipeline(Engine& e, int q = 0)
      : e_(e),
        q_(q),
        out_(e.tx_fds_, e.opt_.underlay_port, e.link_fd_, e.opt_.udp_gso, &e.gso_fallbacks_),
        slots_(packet_buffer(size_t(kBatch) * kSlotSize)),
        in_(sizeof(VnetHdr) + 65536 + kEthHdr) {}

  void run() {
    epoll_event events[kBatch];
    uint64_t next_age = Engine::now_ms() + 1000;
    while (e_.running_.load(std::memory_order_relaxed)) {
      int n = epoll_wait(e_.epfds_[q_], events, kBatch, 500);
      if (n < 0 && errno != EINTR) break;
      {
        std::shared_lock lock(e_.cfg_mu_);
        for (int i = 0; i < n; i++) {
          uint64_t key = events[i].data.u64;
          if (key == ~uint64_t(0)) {
            uint64_t drain;
            (void)!read(e_.wake_fds_[q_], &drain, sizeof(drain));
            continue;
          }
          if (key == kUplinkEpollKey) {
            read_uplink();
            continue;
          }
          Port* p = e_.port_by_id(int(key & 0xffffffff));
          if (p && p->gen == uint32_t(key >> 32)) read_port(*p);
        }
        out_.flush();
        used_ = 0;
      }
      if (reads_) {
        e_.pipeline_c_[q_].tx_reads.fetch_add(reads_, std::memory_order_relaxed);
        reads_ = 0;
      }
      if (q_ != 0) continue;  // housekeeping is pipeline 0's
      uint64_t now = Engine::now_ms();
      if (now >= next_age) {
        e_.age_fdb();
        e_.nat_sweep();
        next_age = now + 1000;
      }
    }
  }

 private:
  // The next free slot; flushes queued datagrams first when every slot is referenced.
  uint8_t* slot() {
    if (used_ == kBatch) {
      out_.flush();
      used_ = 0;
    }
    return &slots_[size_t(used_) * kSlotSize];
  }

  // Runs one frame (already in the current slot, after kVxlanHdr) through the pipeline.
  void from_slot(Port& p, size_t len) {
    int before = out_.pending();
    port_frame(p, slot() + kVxlanHdr, len);
    if (out_.pending() != before) used_++;  // the slot is referenced until the flush
  }

  // This pipeline's queue of the port: queue 0 is the port's fd, queue q its queue_fds[q - 1].
  void read_port(Port& p) {
    int fd = q_ == 0 ? p.fd : size_t(q_) <= p.queue_fds.size() ? p.queue_fds[size_t(q_) - 1] : -1;
    if (fd < 0) return;
    for (int i = 0; i < kBatch; i++) {
      ssize_t n = read(fd, in_.data(), in_.size());
      if (n <= 0) break;  // EAGAIN: drained
      reads_++;
      ingest(p, in_.data(), size_t(n));
    }
  }

  // One read from a port's device: a frame, a TUN packet, or (with offloads) a virtio_net_hdr and what follows.
  void ingest(Port& p, uint8_t* data, size_t len) {
    const size_t room = kSlotSize - kVxlanHdr - kEthHdr;
    if (p.vnet) {
      VnetHdr h;
      if (len < sizeof(h)) { malformed(p, len); return; }
      std::memcpy(&h, data, sizeof(h));
      data += sizeof(h);
      len -= sizeof(h);
      if ((h.gso_type & 0x7f) == kGsoTcpv4) {
        if (!super_frame_to_uplink(p, data, len, h.gso_size)) segment(p, data, len, h.gso_size);
        return;
      }
      if (h.gso_type != kGsoNone) { malformed(p, len); return; }
      if ((h.flags & kVnetNeedsCsum) && !finish_checksum(data, len, h.csum_start, h.csum_offset)) {
        malformed(p, len);
        return;
      }
    }
    if (len > room) { p.counters.rx(len); p.counters.drop(kDropOversize); return; }
    size_t headroom = p.kind == DeviceKind::kTun ? kEthHdr : 0;
    std::memcpy(slot() + kVxlanHdr + headroom, data, len);
    from_slot(p, len);
  }

  // Packets the kernel routed into the uplink, each behind room for the Ethernet and VXLAN headers.
  void read_uplink() {
    const size_t room = kSlotSize - kVxlanHdr - kEthHdr;
    for (int i = 0; i < kBatch; i++) {
      int fd = e_.uplink_fd_;
      if (fd < 0) break;
      if (e_.uplink_vnet_) {
        if (!read_uplink_vnet(fd)) break;
        continue;
      }
      uint8_t* ip = slot() + kVxlanHdr + kEthHdr;
      ssize_t n = read(fd, ip, room);
      if (n <= 0) break;
      uplink_packet(ip, size_t(n));
    }
  }

  // One read from an uplink opened with offload: a virtio_net_hdr, then a packet or a TCP super-packet
  // (read behind room for an Ethernet header, so it can go into a TAP whole). False when drained.
  // An ordinary packet lands in the current slot; a super-packet's bytes past the slot's room land in in_,
  // where its first part is then copied in front of them.
  bool read_uplink_vnet(int fd) {
    const size_t room = kSlotSize - kVxlanHdr - kEthHdr;
    VnetHdr h;
    uint8_t* at = slot() + kVxlanHdr + kEthHdr;
    uint8_t* big = in_.data() + kEthHdr;
    iovec iov[3] = {{&h, sizeof(h)}, {at, room}, {big + room, in_.size() - kEthHdr - room}};
    ssize_t r = readv(fd, iov, 3);
    if (r <= 0) return false;
    size_t n = size_t(r) < sizeof(h) ? 0 : size_t(r) - sizeof(h);
    if ((h.gso_type & 0x7f) == kGsoTcpv4 && n) {
      std::memcpy(big, at, n < room ? n : room);
      uplink_super_packet(big, n, h.gso_size);
      return true;
    }
    if (!n || h.gso_type != kGsoNone ||
        ((h.flags & kVnetNeedsCsum) && !finish_checksum(at, n, h.csum_start, h.csum_offset))) {
      e_.uplink_c_.rx(n);
      e_.uplink_c_.drop(kDropMalformed);
    } else if (n > room) {
      e_.uplink_c_.rx(n);
      e_.uplink_c_.drop(kDropOversize);
    } else {
      uplink_packet(at, n);
    }
    return true;
  }

  // A TCP super-packet from the uplink at `ip` (kEthHdr of headroom): translated once, then written whole
  // into the instance's TAP, or cut into segments that are switched one by one.
  void uplink_super_packet(uint8_t* ip, size_t n, size_t mss) {
    uint8_t* frame = ip - kEthHdr;
    wr16(frame + 12, kEtherIpv4);
    Tcp4Gso g;
    if (!tcp4_gso_parse(frame, kEthHdr + n, mss, &g) || ipv4_packet_len(ip, n) != n ||
        g.hlen + g.mss > kSlotSize - kVxlanHdr) {
      e_.uplink_c_.rx(n);
      e_.uplink_c_.drop(kDropMalformed);
      return;
    }
    e_.uplink_c_.rx(n, g.count);
    e_.uplink_gso_reads_.fetch_add(1, std::memory_order_relaxed);
    uint64_t mac;
    Vni* v = e_.uplink_route(ip, n, g.hlen - kEthHdr + g.mss, &mac);
    if (!v) return;
    tcp4_set_partial_csum(ip, g.ihl, n);
    Engine::uplink_frame(*v, frame, mac);
    if (e_.deliver_super_frame(*v, frame, kEthHdr + n, g)) return;
    for (size_t s = 0; s < g.count; s++) {
      uint8_t* at = slot() + kVxlanHdr;
      size_t len = tcp4_gso_segment(g, s, at);
      int before = out_.pending();
      e_.forward_from_local(*v, nullptr, at, len, out_);
      if (out_.pending() != before) used_++;
    }
  }

  // A super-frame from a TAP port that is bound for the uplink goes there whole, when nothing that must
  // see frames one at a time is in its way: a filter, a capture, a punt rule, an MTU it would exceed.
  bool super_frame_to_uplink(Port& p, uint8_t* f, size_t len, size_t mss) {
    if (!e_.uplink_gso_.load(std::memory_order_relaxed) || p.filter || !e_.captures_.empty()) return false;
    Vni* v = e_.vni_by_id(p.vni);
    Tcp4Gso g;
    if (!v || !v->gw.nat || !tcp4_gso_parse(f, len, mss, &g) || g.hlen + g.mss > kSlotSize - kVxlanHdr) return false;
    size_t seg_ip = g.hlen - kEthHdr + g.mss;
    if (seg_ip > size_t(v->mtu) || seg_ip > size_t(e_.uplink_mtu_)) return false;
    if (!e_.punt_.empty() && e_.punt_.match(v->id, f, len)) return false;
    switch (e_.nat_egress_gso(*v, p, f, len, g)) {
      case Engine::UplinkGso::kNotUplink: return false;
      case Engine::UplinkGso::kSent: return true;
      case Engine::UplinkGso::kRefused: break;
    }
    // Translated already: the segments go out as they are (each gets its own complete checksums).
    for (size_t s = 0; s < g.count; s++) {
      uint8_t* at = slot() + kVxlanHdr;
      size_t sl = tcp4_gso_segment(g, s, at);
      e_.uplink_write(at + kEthHdr, sl - kEthHdr);
    }
    return true;
  }

  // One packet at `ip` (inside the current slot, behind the headroom) from the uplink.
  void uplink_packet(uint8_t* ip, size_t len) {
    int before = out_.pending();
    e_.uplink_ingress(ip, len, out_);
    if (out_.pending() != before) used_++;
  }

  void segment(Port& p, const uint8_t* f, size_t len, size_t mss) {
    Tcp4Gso g;
    if (!tcp4_gso_parse(f, len, mss, &g) || g.hlen + g.mss > kSlotSize - kVxlanHdr) {
      malformed(p, len);
      return;
    }
    for (size_t s = 0; s < g.count; s++) from_slot(p, tcp4_gso_segment(g, s, slot() + kVxlanHdr));
  }

  void malformed(Port& p, size_t len) {
    p.counters.rx(len);
    p.counters.drop(kDropMalformed);
  }

  void port_frame(Port& p, uint8_t* frame, size_t n) {
    Vni* v = e_.vni_by_id(p.vni);
    size_t len = n;
    if (p.kind == DeviceKind::kTun) {
      p.counters.rx(n);
      if (!v) { p.counters.drop(kDropNoDestination); return; }
      len = e_.tun_frame_from_device(p, frame, n, out_, *v);
      if (!len) return;
    } else {
      p.counters.rx(n);
      if (n < kEthHdr) { p.counters.drop(kDropMalformed); return; }
      if (!v) { p.counters.drop(kDropNoDestination); return; }
    }
    if (!e_.captures_.empty()) e_.captures_.offer(kCapPort, kCapIn, v->id, p.id, frame, len);
    // Before the MTU check: only traffic the filter allows is answered with "fragmentation needed".
    if (!e_.filter_passes(p, frame, len, FilterDir::kSend)) return;
    if (len > size_t(v->mtu) + kEthHdr) {
      p.counters.drop(kDropOversize);
      e_.reply_frag_needed(p, frame, len, v->mtu);
      return;
    }
    if (e_.punt_frame(v->id, p.id, 0, frame, len)) return;
    if (v->gw.nat) {
      e_.learn(*v, frame + 6, p.id, 0);  // replies from the uplink find the instance without a flood
      if (e_.nat_egress(*v, &p, frame, len)) return;
    }
    e_.forward_from_local(*v, &p, frame, len, out_);
  }

  Engine& e_;
  int q_;  // which queue of each port this pipeline reads (epfds_[q_]); 0 also owns the uplink and housekeeping
  uint64_t reads_ = 0;
  BatchSender out_;
  std::unique_ptr<uint8_t[]> slots_;
  std::vector<uint8_t> in_;  // one read's worth: virtio_net_hdr + a 64 KiB super-frame
  int used_ = 0;
};

void run_tx_pipeline(Engine& e, int q) {
  TxPipeline(e, q).run();
}

TxProbe::TxProbe(Engine& e) : p_(new TxPipeline(e)) {}
TxProbe::~TxProbe() = default;

void TxProbe::from_port(int id, const uint8_t* data, size_t len) {
  TxPipeline& t = *p_;
  std::shared_lock lock(t.e_.cfg_mu_);
  Port* p = t.e_.port_by_id(id);
  if (!p) return;
  len = std::min(len, t.in_.size());
  if (len) std::memcpy(t.in_.data(), data, len);
  t.ingest(*p, t.in_.data(), len);
  t.out_.flush();
  t.used_ = 0;
}

void TxProbe::from_uplink(const uint8_t* ip, size_t len) {
  TxPipeline& t = *p_;
  std::shared_lock lock(t.e_.cfg_mu_);
  len = std::min(len, kSlotSize - kVxlanHdr - kEthHdr);
  uint8_t* at = t.slot() + kVxlanHdr + kEthHdr;
  if (len) std::memcpy(at, ip, len);
  t.uplink_packet(at, len);
  t.out_.flush();
  t.used_ = 0;
}

void TxProbe::tick() {
  p_->e_.age_fdb();
  p_->e_.nat_sweep();
}

}  // namespace appnet
