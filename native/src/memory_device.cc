#include "memory_device.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "device.h"

namespace appnet {

MemoryDevice memory_device_open() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    throw DeviceError(std::string("memory device: socketpair: ") + std::strerror(errno));
  // Room for a few 64 KiB super-frames each way, as a TAP's queue would hold.
  int bytes = 1 << 20;
  for (int fd : sv) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  }
  return {sv[0], sv[1]};
}

bool memory_device_send(int peer_fd, const uint8_t* frame, size_t len) {
  return send(peer_fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL) == ssize_t(len);
}

std::vector<std::vector<uint8_t>> memory_device_receive(int peer_fd, size_t max) {
  std::vector<std::vector<uint8_t>> out;
  std::vector<uint8_t> buf(65536 + 64);
  while (out.size() < max) {
    ssize_t n = recv(peer_fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) break;  // EAGAIN: nothing more waiting
    out.emplace_back(buf.begin(), buf.begin() + n);
  }
  return out;
}

}  // namespace appnet
