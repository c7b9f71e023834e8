// TUN/TAP devices: create on /dev/net/tun (here, or born inside another network namespace) and configure.
// Every function throws DeviceError with the device name and the failing step on error.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace appnet {

struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DeviceKind { kTap, kTun };

// Opens a non-persistent TUN or TAP device (IFF_NO_PI) with a non-blocking, close-on-exec fd.
// The device disappears when the fd is closed, wherever the device has been moved to.
// With `offload` (TAP only), every read and write starts with a 10-byte virtio_net_hdr and the
// device accepts checksum and TCPv4 segmentation offload (TUN_F_CSUM | TUN_F_TSO4): the kernel
// may hand over frames with a partial checksum and TCP super-frames of up to 64 KiB.
int device_open(DeviceKind kind, const std::string& name, bool offload);

// The same device with `queues` queues (IFF_MULTI_QUEUE when more than one): one fd per queue, each
// read by its own TX pipeline. The kernel puts each flow the instance sends on one queue.
std::vector<int> device_open_queues(DeviceKind kind, const std::string& name, bool offload, int queues);

// Sets the MAC address (TAP only), MTU and admin state of `name` in the current namespace.
void device_set_mac(const std::string& name, const uint8_t mac[6]);
void device_set_mtu(const std::string& name, int mtu);
void device_set_up(const std::string& name, bool up);

// An IPv4 interface address: host byte order, prefix length 0..32.
struct Ipv4Cidr {
  uint32_t address;
  int prefix;
};

// Adds (or replaces, as `ip address replace` does) IPv4 addresses on `name` in the current namespace,
// over one rtnetlink socket: no `ip` process to fork. Set before the device goes up, the kernel adds
// the prefix routes as it comes up.
void device_set_ipv4(const std::string& name, const std::vector<Ipv4Cidr>& addresses);

// Creates the device directly inside the namespace at `netns` (a name under /run/netns, or an
// absolute path) and configures it there: MAC (TAP), MTU, addresses, up. The tun file is opened from a
// short-lived thread that has entered the namespace, so the device is born there: no move, which
// costs the kernel a network-wide synchronisation (~20 ms) per device.
std::vector<int> device_open_in_netns(DeviceKind kind, const std::string& name, bool offload, int queues,
                                     const uint8_t mac[6], int mtu, const std::vector<Ipv4Cidr>& addresses,
                                     const std::string& netns);

}  // namespace appnet
