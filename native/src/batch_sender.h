// The TX pipeline's sender (engine_tx.cc step 6): datagrams queued per source socket during a batch and
// sent with one sendmmsg per socket at the flush; runs of equal-size datagrams to one VTEP go as one UDP
// GSO message (UDP_SEGMENT). Sealed link messages live in a pool the sender owns until the flush.
#pragma once
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "engine.h"

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
    if (link_fd >= 0) pool_ = packet_buffer(size_t(kMaxMsgs) * kLinkStride);
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
  std::unique_ptr<uint8_t[]> pool_;
  int pending_ = 0;
  bool gso_;
  std::atomic<uint64_t>* fallbacks_;
};

}  // namespace appnet
