// The uplink: a TUN device in the engine's own namespace that carries a NAT network's off-net
// traffic to the host kernel (which forwards it to the real NICs) and back. See uplink.cc.
#pragma once
#include <cstddef>
#include <cstdint>

#include "wire.h"

namespace appnet {

// epoll key of the uplink fd in the TX pipeline's set (port keys are gen << 32 | id, gen >= 1,
// and the wake eventfd is all ones).
constexpr uint64_t kUplinkEpollKey = ~uint64_t(0) - 1;

// The IPv4 packet length to hand on: the total length field, when it fits in `avail` (Ethernet
// padding of short frames is not part of the packet); 0 when the header is unusable.
inline size_t ipv4_packet_len(const uint8_t* ip, size_t avail) {
  Ipv4View v;
  return ipv4_view(ip, avail, &v) ? v.total : 0;
}

}  // namespace appnet
