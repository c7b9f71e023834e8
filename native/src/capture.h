// Capture points: copies of what each pipeline stage saw, for operators debugging the data plane.
//
//   port       a frame read from an instance's device, or written to it (as the instance sees it)
//   vni_encap  a frame leaving the VNI towards the wire, before encapsulation (and encryption)
//   vni_decap  a frame entering the VNI from the wire, after decapsulation (and decryption)
//   wire       an underlay datagram as sent or received (after encryption), shown with synthesised
//              outer Ethernet/IPv4/UDP headers so that tcpdump and tshark dissect it
//
// A session selects points, optionally one VNI and/or one port, and a classic BPF program (compiled
// from a tcpdump expression by libpcap, run with libpcap's bpf_filter) applied to the record's bytes.
// Matching packets are copied, cut to the snap length, into a bounded ring. Forwarding never waits:
// if the ring is full, or JS is draining it at that instant, the copy is dropped and counted.
#pragma once
#include <pcap/pcap.h>  // bpf_insn (pcap.h brings the types bpf.h needs)

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace appnet {

enum CapturePoint : uint32_t {
  kCapPort = 1,
  kCapVniEncap = 2,
  kCapVniDecap = 4,
  kCapWire = 8,
};

enum CaptureDir : uint8_t { kCapIn = 0, kCapOut = 1 };

// Records are packed back to back into one byte buffer, each a fixed header and then its bytes, padded to 8:
// no allocation per copied packet, and JS receives a whole batch with one memcpy. The layout is part of the
// addon's contract (dataplane/capture-records.ts reads it):
//   u32 ts_sec | u32 ts_nsec (CLOCK_REALTIME) | u32 orig_len | u32 vni (0: unknown) | i32 port (-1: none) |
//   u16 cap_len | u8 point | u8 dir (0 in: towards the engine, read from a port or received; 1 out: the
//   reverse) | bytes
// Seconds and nanoseconds apart, as pcap records carry them: a file writer converts without 64-bit division.
struct PackedRecordHeader {
  uint32_t ts_sec;
  uint32_t ts_nsec;
  uint32_t orig_len;
  uint32_t vni;
  int32_t port;
  uint16_t cap_len;
  uint8_t point;
  uint8_t dir;
};
static_assert(sizeof(PackedRecordHeader) == 24, "packed capture record header is 24 bytes");

// One drained batch: the packed records and how many there are.
struct CaptureBatch {
  std::vector<uint8_t> bytes;
  uint32_t count = 0;
};

struct CaptureSpec {
  uint32_t points = kCapPort | kCapVniEncap | kCapVniDecap | kCapWire;
  int vni = -1;   // only this VNI (wire records: datagrams of this VNI where known)
  int port = -1;  // only this port id (port points)
  uint32_t snaplen = 65535;
  uint32_t ring = 4096;  // records held until JS drains them
  std::vector<bpf_insn> bpf;  // empty: everything
};

// The most one session's ring holds in bytes, whatever ring x snaplen asks for (two such buffers exist).
constexpr size_t kMaxRingBytes = size_t(32) << 20;

class CaptureSession {
 public:
  CaptureSession(uint32_t id, CaptureSpec spec);

  uint32_t id() const { return id_; }
  const CaptureSpec& spec() const { return spec_; }

  // Whether this session wants a record at `point` for `vni`/`port` at all (before any copying).
  bool wants(uint32_t point, uint32_t vni, int port) const {
    if (!(spec_.points & point)) return false;
    if (spec_.vni >= 0 && vni != 0 && uint32_t(spec_.vni) != vni) return false;
    if (spec_.port >= 0 && point == kCapPort && spec_.port != port) return false;
    return true;
  }

  // Filters and copies one record; `parts` are concatenated (a synthesised header and a payload).
  void offer(uint32_t point, uint8_t dir, uint32_t vni, int port, const uint8_t* head, size_t head_len,
             const uint8_t* body, size_t body_len);

  // Takes everything copied so far (records in arrival order) and empties the ring.
  CaptureBatch drain();
  uint64_t captured() const { return captured_.load(); }
  uint64_t dropped() const { return dropped_.load(); }
  uint64_t filtered() const { return filtered_.load(); }

 private:
  uint32_t id_;
  CaptureSpec spec_;
  std::mutex mu_;
  // The ring: records are appended to `buf_` until `spec_.ring` records or its byte capacity (sized for
  // that many records at the snap length, at most kMaxRingBytes) are reached; drain() swaps it for `spare_`.
  std::unique_ptr<uint8_t[]> buf_, spare_;
  size_t cap_ = 0, used_ = 0;
  uint32_t count_ = 0;
  std::atomic<uint64_t> captured_{0}, dropped_{0}, filtered_{0};
};

// The sessions of one engine. Added and removed under the engine's exclusive configuration lock;
// the pipelines read the list under the shared lock.
class CaptureTable {
 public:
  bool empty() const { return sessions_.empty(); }
  uint32_t add(CaptureSpec spec);
  bool remove(uint32_t id);
  std::shared_ptr<CaptureSession> find(uint32_t id) const;

  // Offers a record to every session that wants it.
  void offer(uint32_t point, uint8_t dir, uint32_t vni, int port, const uint8_t* frame, size_t len) {
    for (auto& s : sessions_)
      if (s->wants(point, vni, port)) s->offer(point, dir, vni, port, nullptr, 0, frame, len);
  }
  // A wire record: `payload` is the UDP payload; outer headers are synthesised (addresses host order).
  void offer_wire(uint8_t dir, uint32_t vni, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                  const uint8_t* payload, size_t len);

 private:
  std::vector<std::shared_ptr<CaptureSession>> sessions_;
  uint32_t next_id_ = 1;
};

// Compiles a tcpdump expression for Ethernet frames; throws std::invalid_argument with libpcap's
// message when it does not parse.
std::vector<bpf_insn> compile_filter(const std::string& expr, uint32_t snaplen);

}  // namespace appnet
