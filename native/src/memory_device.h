// In-memory devices: the engine without TUN/TAP (tests and fuzzing, the role wireguard-go's tuntest plays).
//
// A SOCK_SEQPACKET socketpair. The engine's end behaves as a TUN/TAP fd does for the pipelines: non-blocking,
// one read() is one frame (or, for TUN, one IPv4 packet; with offloads, virtio_net_hdr first), one write() or
// writev() is one frame. The other end is the instance's side: whoever holds it sends frames into the TX
// pipeline and reads what the engine delivered. No root, no namespace, no kernel device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace appnet {

struct MemoryDevice {
  int engine_fd;
  int peer_fd;
};

// Throws DeviceError when the socketpair cannot be made (fd exhaustion).
MemoryDevice memory_device_open();

// The instance's side, on the peer end: one frame in (false when the device's queue is full or the frame is
// refused), and every frame waiting out, at most `max`.
bool memory_device_send(int peer_fd, const uint8_t* frame, size_t len);
std::vector<std::vector<uint8_t>> memory_device_receive(int peer_fd, size_t max);

}  // namespace appnet
