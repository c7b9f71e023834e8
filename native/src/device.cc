#include "device.h"

#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
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

int device_open(DeviceKind kind, const std::string& name, bool offload) {
  ifreq ifr;
  fill_ifreq(&ifr, name);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail(name, "open /dev/net/tun", errno);
  int flags = (kind == DeviceKind::kTap ? IFF_TAP : IFF_TUN) | IFF_NO_PI;
  if (offload) flags |= IFF_VNET_HDR;
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

int device_open_in_netns(DeviceKind kind, const std::string& name, bool offload, const uint8_t mac[6], int mtu,
                         const std::string& netns) {
  std::string path = netns_path(netns);
  Fd nsfd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (nsfd.fd < 0) fail(name, ("open namespace " + path).c_str(), errno);
  int fd = -1;
  int err = 0;
  std::string what;
  std::thread([&] {
    if (setns(nsfd.fd, CLONE_NEWNET) < 0) { err = errno; what = "setns " + path; return; }
    try {
      fd = device_open(kind, name, offload);
      if (kind == DeviceKind::kTap) device_set_mac(name, mac);
      device_set_mtu(name, mtu);
      device_set_up(name, true);
    } catch (const DeviceError& e) {
      what = e.what();
      err = -1;
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }).join();
  if (err > 0) fail(name, what.c_str(), err);
  if (err < 0) throw DeviceError(what);
  return fd;
}

}  // namespace appnet
