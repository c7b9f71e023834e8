// TX pipeline: local ports (and the uplink) -> switch -> VXLAN -> wire. Runs on one engine-owned thread.
// Function per step: read_port/ingest (2), port_frame (3-5b), Engine::forward_from_local and send_to_vtep
// (switch.cc, 5c), BatchSender::flush (6), read_uplink/uplink_packet (7), Engine::age_fdb and nat_sweep (8).
//
//  1. Wait: epoll on every port fd, the uplink TUN and the wake eventfd (stop, configuration change).
//  2. Read: up to kBatch reads per ready port into one ingress buffer. A TAP read starts with a
//     virtio_net_hdr: a TCP super-frame (TSO, up to 64 KiB) is cut into MSS-sized segments and
//     a partial checksum is completed (offload.h), so one read() carries up to ~45 frames.
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
//  8. Once a second, outside the lock: FDB ageing (what expired only) and the NAT table's sweep.
// Steps 2-7 run with the configuration lock held shared. Nothing allocates per packet except a punted
// frame's copy in the punt ring (step 4).
#include <netinet/udp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine.h"
#include "offload.h"
#include "pipeline_probe.h"
#include "uplink.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103  // linux/udp.h; glibc headers may lack it
#endif

namespace appnet {

class BatchSender : public Sender {
 public:
  static constexpr int kMaxMsgs = 256;
  static constexpr int kLinkQueue = kTxSockets;  // the last queue sends from the link socket
  static constexpr size_t kLinkStride = kSlotSize + link::kOverhead;

  BatchSender(const int* fds, uint16_t port, int link_fd, bool gso, std::atomic<uint64_t>* fallbacks)
      : port_(port), q_(kTxSockets + 1), gso_(gso), fallbacks_(fallbacks) {
    for (int i = 0; i < kTxSockets; i++) fds_[i] = fds[i];
    fds_[kLinkQueue] = link_fd;
    if (link_fd >= 0) pool_.resize(size_t(kMaxMsgs) * kLinkStride);
  }

  void to_vtep(uint32_t remote, int sock, const uint8_t* d, size_t len, Vni& v) override {
    enqueue(sock, remote, port_, d, len, &v);
  }

  // Sealed messages live in a pool slot per queued link message, reused after each flush.
  uint8_t* link_buffer() override {
    if (q_[kLinkQueue].n == kMaxMsgs) flush_socket(kLinkQueue);
    return &pool_[size_t(q_[kLinkQueue].n) * kLinkStride];
  }

  void to_link(uint32_t ip, uint16_t port, const uint8_t* msg, size_t len, Vni* v) override {
    enqueue(kLinkQueue, ip, port, msg, len, v);
  }

  int pending() const { return pending_; }

  void flush() {
    for (int s = 0; s <= kTxSockets; s++) if (q_[s].n) flush_socket(s);
    pending_ = 0;
  }

 private:
  void enqueue(int sock, uint32_t ip, uint16_t port, const uint8_t* d, size_t len, Vni* v) {
    Queue& q = q_[sock];
    if (q.n == kMaxMsgs) flush_socket(sock);
    int i = q.n++;
    q.iov[i] = {const_cast<uint8_t*>(d), len};
    sockaddr_in& a = q.addr[i];
    a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(ip);
    a.sin_port = htons(port);
    q.vni[i] = v;
    pending_++;
  }

  static constexpr int kMaxGsoSegs = 64;         // the kernel's UDP_MAX_SEGMENTS
  static constexpr size_t kMaxGsoBytes = 65000;  // below the 64 KiB IP datagram limit

  struct Queue {
    iovec iov[kMaxMsgs];
    sockaddr_in addr[kMaxMsgs];
    Vni* vni[kMaxMsgs];
    int n = 0;
    // Filled by group() at flush time.
    mmsghdr gmsgs[kMaxMsgs];
    int gfirst[kMaxMsgs], gcount[kMaxMsgs];
    alignas(cmsghdr) char ctrl[kMaxMsgs][CMSG_SPACE(sizeof(uint16_t))];
  };

  // Groups queued datagrams into messages: a run of up to kMaxGsoSegs datagrams of one size to
  // one VTEP (the last may be shorter) becomes one message with UDP_SEGMENT.
  int group(Queue& q) {
    int m = 0;
    for (int i = 0; i < q.n;) {
      size_t size = q.iov[i].iov_len;
      size_t total = size;
      int j = i + 1;
      if (gso_) {
        while (j < q.n && j - i < kMaxGsoSegs && q.addr[j].sin_addr.s_addr == q.addr[i].sin_addr.s_addr &&
               q.addr[j].sin_port == q.addr[i].sin_port &&
               q.iov[j].iov_len <= size && total + q.iov[j].iov_len <= kMaxGsoBytes) {
          total += q.iov[j].iov_len;
          bool shorter = q.iov[j].iov_len < size;
          j++;
          if (shorter) break;  // only the last segment may be short
        }
      }
      mmsghdr& g = q.gmsgs[m];
      g = {};
      g.msg_hdr.msg_name = &q.addr[i];
      g.msg_hdr.msg_namelen = sizeof(sockaddr_in);
      g.msg_hdr.msg_iov = &q.iov[i];
      g.msg_hdr.msg_iovlen = size_t(j - i);
      if (j - i > 1) {
        char* c = q.ctrl[m];
        g.msg_hdr.msg_control = c;
        g.msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        cmsghdr* cm = CMSG_FIRSTHDR(&g.msg_hdr);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = uint16_t(size);
        std::memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
      }
      q.gfirst[m] = i;
      q.gcount[m] = j - i;
      m++;
      i = j;
    }
    return m;
  }

  void flush_socket(int s) {
    Queue& q = q_[s];
    int m = group(q);
    int sent = 0;
    bool waited = false;
    while (sent < m) {
      int r = sendmmsg(fds_[s], q.gmsgs + sent, unsigned(m - sent), 0);
      if (r > 0) {
        for (int g = sent; g < sent + r; g++)
          for (int i = q.gfirst[g]; i < q.gfirst[g] + q.gcount[g]; i++)
            if (q.vni[i]) q.vni[i]->counters.tx(q.iov[i].iov_len);
        sent += r;
        continue;
      }
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == ENOBUFS) && !waited) {
        // The socket buffer is full: give the kernel a moment rather than drop at once.
        pollfd pfd{fds_[s], POLLOUT, 0};
        poll(&pfd, 1, 10);
        waited = true;
        continue;
      }
      if (q.gcount[sent] > 1 && (errno == EIO || errno == EINVAL || errno == EMSGSIZE)) {
        // The kernel cannot segment on this path: stop using GSO and resend what is left singly.
        gso_ = false;
        fallbacks_->fetch_add(1, std::memory_order_relaxed);
        int rest = q.gfirst[sent];
        std::memmove(q.iov, q.iov + rest, sizeof(iovec) * size_t(q.n - rest));
        std::memmove(q.addr, q.addr + rest, sizeof(sockaddr_in) * size_t(q.n - rest));
        std::memmove(q.vni, q.vni + rest, sizeof(Vni*) * size_t(q.n - rest));
        q.n -= rest;
        m = group(q);
        sent = 0;
        continue;
      }
      // The message at `sent` failed: count its datagrams and carry on with the rest.
      Drop d = errno == EMSGSIZE ? kDropOversize : kDropQueueFull;
      for (int i = q.gfirst[sent]; i < q.gfirst[sent] + q.gcount[sent]; i++)
        if (q.vni[i]) q.vni[i]->counters.drop(d);
      sent++;
    }
    q.n = 0;
  }

  int fds_[kTxSockets + 1];
  uint16_t port_;
  std::vector<Queue> q_;
  std::vector<uint8_t> pool_;
  int pending_ = 0;
  bool gso_;
  std::atomic<uint64_t>* fallbacks_;
};

class TxPipeline {
  friend class TxProbe;

 public:
  explicit TxPipeline(Engine& e)
      : e_(e),
        out_(e.tx_fds_, e.opt_.underlay_port, e.link_fd_, e.opt_.udp_gso, &e.gso_fallbacks_),
        slots_(size_t(kBatch) * kSlotSize),
        in_(sizeof(VnetHdr) + 65536 + kEthHdr) {}

  void run() {
    epoll_event events[kBatch];
    uint64_t next_age = Engine::now_ms() + 1000;
    while (e_.running_.load(std::memory_order_relaxed)) {
      int n = epoll_wait(e_.epfd_, events, kBatch, 500);
      if (n < 0 && errno != EINTR) break;
      {
        std::shared_lock lock(e_.cfg_mu_);
        for (int i = 0; i < n; i++) {
          uint64_t key = events[i].data.u64;
          if (key == ~uint64_t(0)) {
            uint64_t drain;
            (void)!read(e_.wake_fd_, &drain, sizeof(drain));
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

  void read_port(Port& p) {
    for (int i = 0; i < kBatch; i++) {
      ssize_t n = read(p.fd, in_.data(), in_.size());
      if (n <= 0) break;  // EAGAIN: drained
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
        segment(p, data, len, h.gso_size);
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
      uint8_t* ip = slot() + kVxlanHdr + kEthHdr;
      ssize_t n = read(fd, ip, room);
      if (n <= 0) break;
      uplink_packet(ip, size_t(n));
    }
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
      if (e_.nat_egress(*v, frame, len)) return;
    }
    e_.forward_from_local(*v, &p, frame, len, out_);
  }

  Engine& e_;
  BatchSender out_;
  std::vector<uint8_t> slots_;
  std::vector<uint8_t> in_;  // one read's worth: virtio_net_hdr + a 64 KiB super-frame
  int used_ = 0;
};

void run_tx_pipeline(Engine& e) {
  TxPipeline(e).run();
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
