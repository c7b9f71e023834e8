// TX pipeline: local ports -> switch -> VXLAN -> wire. Runs on one engine-owned thread.
//
//  1. Wait: epoll on every port fd and the wake eventfd (stop, configuration change).
//  2. Read: up to kBatch frames per ready port, each into its own slot, leaving headroom for
//     the VXLAN header (and for TUN ports the synthesised Ethernet header) so that
//     encapsulation writes in place and never copies the frame.
//  3. Check: runt frames are malformed; frames above the VNI's MTU are oversize, and an IPv4
//     DF packet is answered with ICMP "fragmentation needed" (the sender lowers its PMTU).
//  4. Punt: frames matching a classifier are copied to the punt ring (and, if the rule
//     consumes them, go no further).
//  5. Switch: learn the source MAC on the port; a known local destination is written to its
//     device at once; a known remote goes to its VTEP; anything else floods to the VNI's other
//     local ports and to every VTEP in its flood list (head-end replication, sharing one slot).
//  6. Flush: datagrams are queued per source socket (the flow hash picks the socket, and so the
//     outer source port) and sent with one sendmmsg per socket per batch.
// Steps 2-6 run with the configuration lock held shared; nothing allocates per packet.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "engine.h"

namespace appnet {

class BatchSender : public Sender {
 public:
  static constexpr int kMaxMsgs = 256;

  BatchSender(const int* fds, uint16_t port) : fds_(fds), port_(port), q_(kTxSockets) {}

  void to_vtep(uint32_t remote, int sock, const uint8_t* d, size_t len, Vni& v) override {
    Queue& q = q_[sock];
    if (q.n == kMaxMsgs) flush_socket(sock);
    int i = q.n++;
    q.iov[i] = {const_cast<uint8_t*>(d), len};
    sockaddr_in& a = q.addr[i];
    a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(remote);
    a.sin_port = htons(port_);
    mmsghdr& m = q.msgs[i];
    m = {};
    m.msg_hdr.msg_name = &a;
    m.msg_hdr.msg_namelen = sizeof(a);
    m.msg_hdr.msg_iov = &q.iov[i];
    m.msg_hdr.msg_iovlen = 1;
    q.vni[i] = &v;
    pending_++;
  }

  int pending() const { return pending_; }

  void flush() {
    for (int s = 0; s < kTxSockets; s++) if (q_[s].n) flush_socket(s);
    pending_ = 0;
  }

 private:
  struct Queue {
    mmsghdr msgs[kMaxMsgs];
    iovec iov[kMaxMsgs];
    sockaddr_in addr[kMaxMsgs];
    Vni* vni[kMaxMsgs];
    int n = 0;
  };

  void flush_socket(int s) {
    Queue& q = q_[s];
    int sent = 0;
    bool waited = false;
    while (sent < q.n) {
      int r = sendmmsg(fds_[s], q.msgs + sent, unsigned(q.n - sent), 0);
      if (r > 0) {
        for (int i = sent; i < sent + r; i++) q.vni[i]->c.tx(q.iov[i].iov_len);
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
      // The datagram at `sent` failed: count it and carry on with the rest.
      q.vni[sent]->c.drop(errno == EMSGSIZE ? kDropOversize : kDropQueueFull);
      sent++;
    }
    q.n = 0;
  }

  const int* fds_;
  uint16_t port_;
  std::vector<Queue> q_;
  int pending_ = 0;
};

class TxPipeline {
 public:
  explicit TxPipeline(Engine& e)
      : e_(e), out_(e.tx_fds_, e.opt_.underlay_port), slots_(size_t(kBatch) * kSlotSize) {}

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
          Port* p = e_.port_by_id(int(key & 0xffffffff));
          if (p && p->gen == uint32_t(key >> 32)) read_port(*p);
        }
        out_.flush();
        used_ = 0;
      }
      uint64_t now = Engine::now_ms();
      if (now >= next_age) {
        e_.age_fdb();
        next_age = now + 1000;
      }
    }
  }

 private:
  void read_port(Port& p) {
    size_t headroom = kVxlanHdr + (p.kind == DeviceKind::kTun ? kEthHdr : 0);
    for (int i = 0; i < kBatch; i++) {
      if (used_ == kBatch) {
        out_.flush();
        used_ = 0;
      }
      uint8_t* base = &slots_[size_t(used_) * kSlotSize];
      ssize_t n = read(p.fd, base + headroom, kSlotSize - headroom);
      if (n <= 0) break;  // EAGAIN: drained
      int before = out_.pending();
      handle(p, base + kVxlanHdr, size_t(n));
      if (out_.pending() != before) used_++;  // the slot is referenced until the flush
    }
  }

  void handle(Port& p, uint8_t* frame, size_t n) {
    Vni* v = e_.vni_by_id(p.vni);
    size_t len = n;
    if (p.kind == DeviceKind::kTun) {
      p.c.rx(n);
      if (!v) { p.c.drop(kDropNoDestination); return; }
      len = e_.tun_frame_from_device(p, frame, n, out_, *v);
      if (!len) return;
    } else {
      p.c.rx(n);
      if (n < kEthHdr) { p.c.drop(kDropMalformed); return; }
      if (!v) { p.c.drop(kDropNoDestination); return; }
    }
    if (len > size_t(v->mtu) + kEthHdr) {
      p.c.drop(kDropOversize);
      e_.reply_frag_needed(p, frame, len, v->mtu);
      return;
    }
    if (e_.punt_frame(v->id, p.id, 0, frame, len)) return;
    e_.forward_from_local(*v, &p, frame, len, out_);
  }

  Engine& e_;
  BatchSender out_;
  std::vector<uint8_t> slots_;
  int used_ = 0;
};

void run_tx_pipeline(Engine& e) {
  TxPipeline(e).run();
}

}  // namespace appnet
