#include "device.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if_arp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace appnet {
namespace {

[[noreturn]] void fail(const std::string& name, const char* step, int err) {
  throw DeviceError("device " + name + ": " + step + ": " + std::strerror(err));
}

void fill_ifreq(ifreq* ifr, const std::string& name) {
  std::memset(ifr, 0, sizeof(*ifr));
  if (name.empty() || name.size() >= IFNAMSIZ)
    throw DeviceError("device name '" + name + "' must be 1 to 15 bytes");
  std::memcpy(ifr->ifr_name, name.data(), name.size());
}

// Runs one ioctl on an AF_INET socket of the current namespace.
void ifreq_ioctl(int sock, const std::string& name, unsigned long req, ifreq* ifr,
                 const char* step) {
  if (ioctl(sock, req, ifr) < 0) fail(name, step, errno);
}

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) close(fd); }
};

int inet_socket(const std::string& name) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail(name, "socket", errno);
  return s;
}

void set_up_with(int sock, const std::string& name, bool up) {
  ifreq ifr;
  fill_ifreq(&ifr, name);
  ifreq_ioctl(sock, name, SIOCGIFFLAGS, &ifr, "get flags");
  if (up) ifr.ifr_flags |= IFF_UP; else ifr.ifr_flags &= ~IFF_UP;
  ifreq_ioctl(sock, name, SIOCSIFFLAGS, &ifr, up ? "set up" : "set down");
}

std::string netns_path(const std::string& netns) {
  if (!netns.empty() && netns[0] == '/') return netns;
  if (netns.empty() || netns.find('/') != std::string::npos || netns == "." || netns == "..")
    throw DeviceError("network namespace '" + netns + "' is not a name or an absolute path");
  return "/run/netns/" + netns;
}

}  // namespace

namespace {

int open_queue(DeviceKind kind, const std::string& name, bool offload, bool multi_queue) {
  ifreq ifr;
  fill_ifreq(&ifr, name);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail(name, "open /dev/net/tun", errno);
  int flags = (kind == DeviceKind::kTap ? IFF_TAP : IFF_TUN) | IFF_NO_PI;
  if (offload) flags |= IFF_VNET_HDR;
  if (multi_queue) flags |= IFF_MULTI_QUEUE;
  ifr.ifr_flags = short(flags);
  const char* step = "TUNSETIFF";
  int hdr = 10;  // legacy struct virtio_net_hdr
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) goto error;
  if (offload) {
    step = "TUNSETVNETHDRSZ";
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) goto error;
    step = "TUNSETOFFLOAD";
    if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) < 0) goto error;
  }
  return fd;
error:
  int err = errno;
  close(fd);
  fail(name, step, err);
}

}  // namespace

int device_open(DeviceKind kind, const std::string& name, bool offload) {
  return open_queue(kind, name, offload, false);
}

std::vector<int> device_open_queues(DeviceKind kind, const std::string& name, bool offload, int queues) {
  if (queues <= 1) return {device_open(kind, name, offload)};
  std::vector<int> fds;
  try {
    // The first open creates the device; each further one attaches a queue to it.
    for (int q = 0; q < queues; q++) fds.push_back(open_queue(kind, name, offload, true));
  } catch (...) {
    for (int fd : fds) close(fd);
    throw;
  }
  return fds;
}

void device_set_mac(const std::string& name, const uint8_t mac[6]) {
  Fd s(inet_socket(name));
  ifreq ifr;
  fill_ifreq(&ifr, name);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
  ifreq_ioctl(s.fd, name, SIOCSIFHWADDR, &ifr, "set MAC");
}

void device_set_mtu(const std::string& name, int mtu) {
  Fd s(inet_socket(name));
  ifreq ifr;
  fill_ifreq(&ifr, name);
  ifr.ifr_mtu = mtu;
  ifreq_ioctl(s.fd, name, SIOCSIFMTU, &ifr, "set MTU");
}

void device_set_up(const std::string& name, bool up) {
  Fd s(inet_socket(name));
  set_up_with(s.fd, name, up);
}

namespace {

// Appends one rtnetlink attribute to the message in `buf` (nlmsg_len is its current length).
void add_attr(nlmsghdr* h, size_t cap, uint16_t type, const void* data, size_t len) {
  size_t at = NLMSG_ALIGN(h->nlmsg_len);
  size_t need = RTA_LENGTH(len);
  if (at + RTA_ALIGN(need) > cap) throw DeviceError("netlink message overflow");
  auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(h) + at);
  rta->rta_type = type;
  rta->rta_len = uint16_t(need);
  std::memcpy(RTA_DATA(rta), data, len);
  h->nlmsg_len = uint32_t(at + RTA_ALIGN(need));
}

std::string cidr_text(const Ipv4Cidr& a) {
  in_addr in{htonl(a.address)};
  char text[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &in, text, sizeof(text));
  return std::string(text) + "/" + std::to_string(a.prefix);
}

}  // namespace

void device_set_ipv4(const std::string& name, const std::vector<Ipv4Cidr>& addresses) {
  if (addresses.empty()) return;
  unsigned index = if_nametoindex(name.c_str());
  if (index == 0) fail(name, "if_nametoindex", errno);
  Fd s(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (s.fd < 0) fail(name, "netlink socket", errno);
  uint32_t seq = 0;
  for (const Ipv4Cidr& a : addresses) {
    std::string step = "add address " + cidr_text(a);
    if (a.prefix < 0 || a.prefix > 32) throw DeviceError("device " + name + ": " + step + ": prefix length out of 0..32");
    alignas(nlmsghdr) char buf[256] = {};
    auto* h = reinterpret_cast<nlmsghdr*>(buf);
    h->nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
    h->nlmsg_type = RTM_NEWADDR;
    // CREATE | REPLACE: what `ip address replace` sends, so a daemon that re-applies an address is idempotent.
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    h->nlmsg_seq = ++seq;
    auto* ifa = static_cast<ifaddrmsg*>(NLMSG_DATA(h));
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = uint8_t(a.prefix);
    ifa->ifa_index = index;
    uint32_t net = htonl(a.address);
    add_attr(h, sizeof(buf), IFA_LOCAL, &net, 4);
    add_attr(h, sizeof(buf), IFA_ADDRESS, &net, 4);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(s.fd, buf, h->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
      fail(name, step.c_str(), errno);
    // The answer is one NLMSG_ERROR: error 0 is the ACK.
    alignas(nlmsghdr) char reply[512];
    for (;;) {
      ssize_t n = recv(s.fd, reply, sizeof(reply), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(name, step.c_str(), errno);
      auto* r = reinterpret_cast<nlmsghdr*>(reply);
      if (!NLMSG_OK(r, size_t(n)) || r->nlmsg_seq != seq) continue;
      if (r->nlmsg_type != NLMSG_ERROR) continue;
      int err = static_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
      if (err != 0) fail(name, step.c_str(), -err);
      break;
    }
  }
}

std::vector<int> device_open_in_netns(DeviceKind kind, const std::string& name, bool offload, int queues,
                                     const uint8_t mac[6], int mtu, const std::vector<Ipv4Cidr>& addresses,
                                     const std::string& netns) {
  std::string path = netns_path(netns);
  Fd nsfd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (nsfd.fd < 0) fail(name, ("open namespace " + path).c_str(), errno);
  std::vector<int> fds;
  int err = 0;
  std::string what;
  std::thread([&] {
    if (setns(nsfd.fd, CLONE_NEWNET) < 0) { err = errno; what = "setns " + path; return; }
    try {
      fds = device_open_queues(kind, name, offload, queues);
      if (kind == DeviceKind::kTap) device_set_mac(name, mac);
      device_set_mtu(name, mtu);
      device_set_ipv4(name, addresses);
      device_set_up(name, true);
    } catch (const DeviceError& e) {
      what = e.what();
      err = -1;
      for (int fd : fds) close(fd);
      fds.clear();
    }
  }).join();
  if (err > 0) fail(name, what.c_str(), err);
  if (err < 0) throw DeviceError(what);
  return fds;
}

}  // namespace appnet
