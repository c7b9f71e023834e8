// The pipelines on the caller's thread, one batch per call: what fuzz targets (fuzz/) and in-process tests drive
// instead of the engine's threads. Each probe owns a pipeline exactly as its thread would (buffers, senders, the
// link pipeline's handshake limiter) and takes the configuration lock shared for the batch. The engine must not be
// start()ed while a probe is used: the probe is that pipeline's thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace appnet {

class Engine;
class RxPipeline;
class TxPipeline;

class RxProbe {
 public:
  // `link`: the encrypted link pipeline (datagrams as they arrive on the link port); else the VXLAN port.
  RxProbe(Engine& e, bool link);
  ~RxProbe();
  struct Datagram {
    const uint8_t* data;
    size_t len;
    uint32_t remote;  // outer source (host order)
    uint16_t remote_port;
  };
  // One recvmmsg batch (at most kBatch): each datagram is copied to its slot and dispatched; super-frames built
  // during the batch are written at its end.
  void batch(const Datagram* d, size_t n);

 private:
  std::unique_ptr<RxPipeline> p_;
};

class TxProbe {
 public:
  explicit TxProbe(Engine& e);
  ~TxProbe();
  // One read from port `id`'s device (a virtio_net_hdr first when the port has offloads), then the flush.
  void from_port(int id, const uint8_t* data, size_t len);
  // One IPv4 packet read from the uplink, then the flush.
  void from_uplink(const uint8_t* ip, size_t len);
  // The once-a-second work of the TX thread: FDB ageing and the NAT sweep.
  void tick();

 private:
  std::unique_ptr<TxPipeline> p_;
};

}  // namespace appnet
