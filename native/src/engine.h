// The packet engine: local ports (TAP/TUN), per-VNI L2 forwarding tables, VXLAN over UDP.
//
// Two pipelines run on threads the engine owns (see engine_tx.cc and engine_rx.cc):
//   TX  port -> switch -> encapsulate -> wire   (reads ports, batches datagrams with sendmmsg)
//   RX  wire -> decapsulate -> switch -> port   (reads datagrams with recvmmsg)
// JS configures tables with synchronous calls that take the configuration lock exclusively;
// the threads hold it shared for one batch at a time, so a change waits at most one batch.
#pragma once
#include <netinet/in.h>
#include <pthread.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "capture.h"
#include "counters.h"
#include "device.h"
#include "gro.h"
#include "links.h"
#include "nat.h"
#include "port_filter.h"
#include "punt.h"
#include "wire.h"

namespace appnet {

constexpr int kTxSockets = 16;        // outer source ports to spread flows over
constexpr size_t kSlotSize = 16384;   // largest datagram handled (jumbo underlay included)
constexpr int kBatch = 64;            // frames per read batch and datagrams per recvmmsg

// A pipeline's packet buffer, left uninitialised: a page becomes resident when a packet first lands in it,
// so an idle engine does not carry ~14 MB of zeroed slots it has never used (std::vector zero-fills).
inline std::unique_ptr<uint8_t[]> packet_buffer(size_t n) { return std::unique_ptr<uint8_t[]>(new uint8_t[n]); }

// A reader-writer lock that prefers writers: the pipelines take it shared once per batch, so a
// reader-preferring lock could starve JS configuration calls under sustained load. Not recursive.
class RwLock {
 public:
  RwLock() {
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&l_, &a);
    pthread_rwlockattr_destroy(&a);
  }
  ~RwLock() { pthread_rwlock_destroy(&l_); }
  RwLock(const RwLock&) = delete;
  void lock() { pthread_rwlock_wrlock(&l_); }
  void unlock() { pthread_rwlock_unlock(&l_); }
  void lock_shared() { pthread_rwlock_rdlock(&l_); }
  void unlock_shared() { pthread_rwlock_unlock(&l_); }

 private:
  pthread_rwlock_t l_;
};

struct Port {
  int id;
  uint32_t gen;
  std::string name;
  DeviceKind kind;
  int fd;             // queue 0: written by every pipeline, read by TX pipeline 0
  std::vector<int> queue_fds;  // queues 1.. of a multi-queue device: queue q is read by TX pipeline q
  int peer_fd = -1;  // memory ports (memory_device.h): the instance's end, closed with the port
  bool vnet;  // reads and writes carry a virtio_net_hdr (TAP with offloads)
  uint32_t vni;
  uint8_t mac[6];
  int mtu;
  uint32_t ipv4;  // TUN: the instance's address, answered for in ARP (host order)
  // Application connection ports only: what the port may carry. Null (every other port) costs
  // the pipelines one pointer test per frame.
  std::unique_ptr<const PortFilter> filter;
  Counters counters;
  // TAP receive coalescing (gro.h): segments that went out inside a super-frame, and the
  // super-frames (each counts its segments in c.tx as they arrived).
  std::atomic<uint64_t> gro_merged{0}, gro_writes{0};
  // TUN: IPv4 -> MAC of overlay neighbours, learned from frames delivered to this port, at most fdb_limit of
  // them, each valid for the ageing time since it was last seen (tun_port.cc).
  struct Neighbour { uint64_t mac; uint64_t seen_ms; };
  std::mutex neigh_mu;
  std::unordered_map<uint32_t, Neighbour> neigh;
  uint64_t neigh_swept_ms = 0;
  std::unordered_map<uint32_t, uint64_t> arp_sent_ms;  // when each address was last asked for (at most fdb_limit)
};

struct FdbEntry {
  int port;         // local port id, or -1 for a remote VTEP
  uint32_t remote;  // remote VTEP underlay address (host order) when port == -1
  uint64_t seen_ms;
  bool is_static;
  uint64_t queued_ms = 0;  // the time of this entry's one item in its VNI's ageing queue (learnt entries)
};

// Why learning did not take a frame's source MAC (Engine::learn).
enum class Learn { kOk, kConflict, kFull };

// A network's gateway as the NAT stage sees it (uplink.cc): frames to `mac` whose IPv4 destination
// is outside net/mask leave through the uplink when `nat` is set. Unset (ip == 0): no NAT stage.
struct NatGateway {
  uint32_t ip = 0, net = 0, mask = 0;  // host order
  uint8_t mac[6] = {};
  bool nat = false;
};

struct Vni {
  uint32_t id;
  int mtu;
  bool encrypted = false;  // carried only on encrypted links; clear VXLAN for it is dropped
  std::vector<uint32_t> flood;  // remote VTEPs for broadcast, multicast and unknown unicast
  std::vector<int> ports;       // local ports in this VNI
  std::mutex fdb_mu;
  std::unordered_map<uint64_t, FdbEntry> fdb;
  // Learnt entries in the order they were last queued (mac, queued_ms): ageing pops only what is due, so it
  // costs the entries that expired (or were refreshed and go back in the queue), never a walk of the table.
  std::deque<std::pair<uint64_t, uint64_t>> ageing;
  NatGateway gw;  // written under the configuration lock held exclusively
  // IPv4 -> MAC of the network's instances, for packets from the uplink (guarded by fdb_mu).
  std::unordered_map<uint32_t, uint64_t> neigh;
  Counters counters;
};

// Where the switch sends datagrams. The TX thread batches; other callers send at once.
// to_vtep: `dgram` starts with the VXLAN header and must stay valid until flush() returns.
// to_link: a sealed link message, written into the buffer link_buffer() handed out last.
class Sender {
 public:
  virtual ~Sender() = default;
  virtual void to_vtep(uint32_t remote, int sock, const uint8_t* dgram, size_t len, Vni& v) = 0;
  // Room for one sealed message (kSlotSize + link::kOverhead bytes), valid until flush.
  virtual uint8_t* link_buffer() = 0;
  virtual void to_link(uint32_t ip, uint16_t port, const uint8_t* msg, size_t len, Vni* v) = 0;
};

// Sends each datagram at once: used off the TX thread (injection, ARP answers on RX).
class ImmediateSender : public Sender {
 public:
  ImmediateSender(const int* fds, uint16_t port, int link_fd)
      : fds_(fds), port_(port), link_fd_(link_fd) {}
  void to_vtep(uint32_t remote, int sock, const uint8_t* d, size_t len, Vni& v) override;
  uint8_t* link_buffer() override;
  void to_link(uint32_t ip, uint16_t port, const uint8_t* msg, size_t len, Vni* v) override;

 private:
  const int* fds_;
  uint16_t port_;
  int link_fd_;
  std::unique_ptr<uint8_t[]> buf_;
};

struct EngineOptions {
  uint32_t underlay_ip = 0;  // host order
  uint16_t underlay_port = 4789;
  uint32_t ageing_ms = 300000;
  uint32_t fdb_limit = 16384;  // learnt entries per VNI; beyond, frames from new MACs off the wire are fdb_full
  // Kill switches, one per offload (kernels have broken each of them at some point).
  bool udp_gso = true;      // send runs of datagrams as one UDP_SEGMENT message
  bool udp_gro = true;      // receive coalesced runs (UDP_GRO)
  bool tap_offload = true;  // TAP ports take checksum and TCPv4 segmentation offload
  bool tap_gro = true;      // RX coalesces TCP segments into super-frames for offload TAP ports
  bool tap_gro_udp = false; // ... and runs of UDP datagrams (GSO UDP_L4; opt-in: burstier into the socket)
  bool uplink_offload = true;  // the uplink TUN takes and gives TCPv4 super-packets (uplink.cc)
  uint16_t link_port = 0;   // encrypted links' UDP port (on every address); 0: no links
  // Pipelines of each kind (engine_threads.md): TX pipelines, each reading its own queue of every
  // multi-queue TAP/TUN port; RX and link RX pipelines, each on its own SO_REUSEPORT socket.
  int threads = 1;
  // CPUs to pin pipelines to (engine_threads.md "Pinning"): pipeline i's TX, RX and link RX threads all
  // run on cpus[i % size], so a reply woken by a frame the RX thread delivered stays on that CPU.
  // Empty: the scheduler places them.
  std::vector<int> cpus;
};

constexpr int kMaxThreads = 16;

// What each pipeline did, so an operator (and a test) can see the work spread: reads from ports and the
// uplink (TX), datagrams received (RX, link RX). Each counter has one writer.
struct PipelineCounters {
  std::atomic<uint64_t> tx_reads{0}, rx_datagrams{0}, link_datagrams{0};
};

// An RX pipeline's super-frames under construction (gro.h), one per port that has one, at most
// kSlots ports at a time. Owned by one thread; buffers are allocated once. Every slot holds a
// Port* and is flushed (Engine::gro_flush) before the pipeline releases the configuration lock.
struct TapGro {
  static constexpr int kSlots = 8;
  struct Slot {
    Port* port = nullptr;
    std::unique_ptr<uint8_t[]> buf;
    GroFrame frame;
  };
  TapGro() {
    for (Slot& s : slots) {
      s.buf.reset(new uint8_t[kGroFrameMax]);
      s.frame = GroFrame(s.buf.get(), kGroFrameMax);
    }
    scratch.reset(new uint8_t[kGroFrameMax]);
  }
  Slot slots[kSlots];
  int victim = 0;                      // next slot to flush when all are busy
  bool refused = false;                // the kernel refused a TCP super-frame: write segments from now on
  bool udp = false;                    // UDP datagrams are coalesced too (EngineOptions::tap_gro_udp)
  bool udp_refused = false;            // it refused a UDP one (no USO before Linux 6.2): UDP goes frame by frame
  std::unique_ptr<uint8_t[]> scratch;  // resegmentation after a refusal
};

struct FdbRow {
  uint64_t mac;
  FdbEntry e;
};

class Engine {
 public:
  explicit Engine(const EngineOptions& o);
  ~Engine();

  void start();
  void stop();  // joins threads and closes every device (they disappear)
  bool running() const { return running_; }

  void add_vni(uint32_t vni, int mtu, bool encrypted = false);
  void remove_vni(uint32_t vni);
  void set_flood(uint32_t vni, std::vector<uint32_t> remotes);
  // The VTEPs clear VXLAN is accepted from (host order); until the first call, any. Anything else is dropped
  // as unknown_vtep before decapsulation, lookup or learning.
  void set_known_vteps(std::vector<uint32_t> vteps);

  struct PortSpec {
    std::string name;
    DeviceKind kind;
    uint32_t vni;
    uint8_t mac[6];
    int mtu;
    uint32_t ipv4;
    std::string netns;
    bool memory = false;  // an in-memory device (memory_device.h) instead of TUN/TAP: no root, no netns
    bool filtered = false;
    PortFilter filter{};
    std::vector<Ipv4Cidr> addresses;  // interface addresses set on the device (kernel side)
  };
  int add_port(const PortSpec& s);
  void remove_port(int id);
  // The instance's end of a memory port (PortSpec::memory), or -1.
  int port_peer_fd(int id);

  void add_fdb(uint32_t vni, uint64_t mac, int port, uint32_t remote);
  bool remove_fdb(uint32_t vni, uint64_t mac);
  std::vector<FdbRow> fdb(uint32_t vni);

  uint32_t add_punt_rule(const PuntRule& r);
  bool remove_punt_rule(uint32_t id);
  PuntTable& punt() { return punt_; }

  void inject_to_port(int id, const uint8_t* frame, size_t len);
  void inject_to_vni(uint32_t vni, const uint8_t* frame, size_t len);
  // As if the port's instance had sent the frame: learnt on the port, punted, switched.
  void inject_from_port(int id, const uint8_t* frame, size_t len);
  void send_datagram(uint32_t ip, uint16_t port, const uint8_t* data, size_t len);

  // Snapshot access for counters: call with the returned lock held.
  std::shared_lock<RwLock> read_lock() { return std::shared_lock(cfg_mu_); }
  const std::vector<std::unique_ptr<Port>>& ports() const { return ports_; }
  const std::unordered_map<uint32_t, std::unique_ptr<Vni>>& vnis() const { return vnis_; }
  Counters& wire() { return wire_; }
  // Times a TX pipeline found UDP GSO refused by the kernel and went on without it.
  uint64_t gso_fallbacks() const { return gso_fallbacks_.load(); }
  // Super-frames a TAP refused (written again as segments; that pipeline stops coalescing).
  uint64_t gro_fallbacks() const { return gro_fallbacks_.load(); }
  // TCP super-packets written to and read from the uplink whole, and times the kernel refused one.
  uint64_t uplink_gso_writes() const { return uplink_gso_writes_.load(); }
  int threads() const { return opt_.threads; }
  const PipelineCounters& pipeline_counters(int i) const { return pipeline_c_[i]; }
  uint64_t uplink_gso_reads() const { return uplink_gso_reads_.load(); }
  uint64_t uplink_gso_fallbacks() const { return uplink_gso_fallbacks_.load(); }
  uint16_t underlay_port() const { return opt_.underlay_port; }
  std::vector<uint16_t> tx_source_ports() const;

  static uint64_t now_ms();

  // Encrypted links (links.h). Handshake messages arriving on the link port are punted with
  // rule id kLinkPuntRule; JS answers with link_send().
  static constexpr uint32_t kLinkPuntRule = 0;
  bool links_enabled() const { return link_fd_ >= 0; }
  void link_add_peer(uint32_t vtep, uint32_t ip, uint16_t port);
  bool link_remove_peer(uint32_t vtep);
  void link_install(uint32_t vtep, uint32_t local_idx, uint32_t remote_idx, const uint8_t* send_key,
                    const uint8_t* recv_key, bool initiator);
  void link_expire();
  bool link_keepalive(uint32_t vtep);
  void link_send(uint32_t ip, uint16_t port, const uint8_t* data, size_t len);
  LinkTable& links() { return links_; }
  uint16_t link_port() const;

  // The uplink and NAT stage (uplink.cc, docs/nat.md "Uplink and network node").
  // Opens (or, with an empty name, closes) the uplink TUN device in the engine's own namespace.
  void set_uplink(const std::string& name, int mtu);
  // An in-memory uplink (memory_device.h) in place of the TUN; returns the outside's end (IPv4 packets).
  int set_uplink_memory(int mtu);
  bool has_uplink() const { return uplink_fd_ >= 0; }
  // The table every NAT VNI translates through; null: packets to the uplink pass untranslated.
  void set_nat(std::shared_ptr<nat::NatTable> t);
  void set_gateway(uint32_t vni, const NatGateway& g);
  void add_neighbour(uint32_t vni, uint32_t ip, uint64_t mac);
  bool remove_neighbour(uint32_t vni, uint32_t ip);
  // A routed address: packets from the uplink to `ip` go into `vni` untranslated.
  void add_routed(uint32_t vni, uint32_t ip);
  bool remove_routed(uint32_t ip);
  Counters& uplink_counters() { return uplink_c_; }

  // Capture sessions (capture.h).
  uint32_t capture_add(CaptureSpec spec);
  bool capture_remove(uint32_t id);
  std::shared_ptr<CaptureSession> capture(uint32_t id);

 private:
  friend class TxPipeline;
  friend class RxPipeline;
  friend class TxProbe;
  friend class RxProbe;
  void install_uplink(int fd, int peer_fd, int mtu, const std::string& name, bool vnet);

  // Switching, shared by both pipelines and by injection. `frame` has kVxlanHdr bytes of
  // writable headroom before it. `in` is the local port it came from, or null.
  void forward_from_local(Vni& v, Port* in, uint8_t* frame, size_t len, Sender& out);
  // Sends one VXLAN datagram towards a VTEP: in clear, or sealed on the peer's link.
  void send_to_vtep(Sender& out, Vni& v, uint32_t remote, int sock, const uint8_t* dgram, size_t len);
  // `gro`: the calling RX pipeline's coalescer, or null to write the frame at once.
  void deliver_to_port(Port& p, uint8_t* frame, size_t len, Sender& out, TapGro* gro = nullptr);
  // Applies the port's filter (if any) in direction `dir`; false (and counted on the port and its
  // VNI) when the frame must not pass.
  bool filter_passes(Port& p, const uint8_t* frame, size_t len, FilterDir dir) {
    if (!p.filter || port_filter_allows(*p.filter, frame, len, dir)) return true;
    count_filtered(p);
    return false;
  }
  void count_filtered(Port& p);
  // Writes every pending super-frame of `g`; the RX pipeline calls it at the end of each batch.
  void gro_flush(TapGro& g);
  void gro_write(TapGro& g, TapGro::Slot& s);
  // Writes one frame (or, for TUN, one IP packet) to the device; false if the kernel refused it.
  bool write_port(Port& p, int fd, const uint8_t* data, size_t len);
  // The queue of the port an Ethernet frame is written through: by flow. Tun's automatic queue steering
  // puts a flow the instance sends on the queue that flow was last written through, so each flow's both
  // directions stay with one TX pipeline (no reordering) and flows spread over them.
  int queue_fd(const Port& p, const uint8_t* frame, size_t len) const {
    if (p.queue_fds.empty()) return p.fd;
    uint32_t q = flow_hash(frame, len) % uint32_t(p.queue_fds.size() + 1);
    return q == 0 ? p.fd : p.queue_fds[q - 1];
  }
  // Static entries never move. kConflict when a frame from the wire (port < 0) claims the MAC of a local port (a
  // static entry, or a learnt one still live): the caller drops it as mac_conflict. kFull when the MAC is new
  // and the VNI already has fdb_limit live entries (expired ones are reclaimed first): nothing learnt (the wire's
  // caller drops it as fdb_full).
  Learn learn(Vni& v, const uint8_t* src_mac, int port, uint32_t remote);
  bool vtep_known(uint32_t remote) const { return !vteps_enforced_ || known_vteps_.count(remote) != 0; }
  bool vteps_enforced() const { return vteps_enforced_; }
  bool lookup(Vni& v, const uint8_t* dst_mac, FdbEntry* out);
  bool punt_frame(uint32_t vni, int port, uint32_t remote, const uint8_t* f, size_t len);
  void age_fdb();
  void age_vni(Vni& v, uint64_t now);  // v.fdb_mu held: the VNI's due ageing items (switch.cc)

  // TUN ports (tun_port.cc): the overlay sees an Ethernet station; the device sees IPv4.
  void tun_deliver(Port& p, uint8_t* frame, size_t len, Sender& out);
  // Learns ip -> mac for a TUN port (its neigh_mu held); false when the table is full of live entries.
  bool tun_learn(Port& p, uint32_t ip, uint64_t mac, uint64_t now);
  size_t tun_frame_from_device(Port& p, uint8_t* frame, size_t ip_len, Sender& out, Vni& v);
  // ICMP "fragmentation needed" (RFC 1191) for an oversize DF IPv4 frame, as an Ethernet frame back to its
  // sender in `out` (kFragNeededMax bytes); 0 when none is due (no DF, an ICMP error, not IPv4).
  static constexpr size_t kFragNeededMax = kEthHdr + 20 + 8 + 60 + 8;
  static size_t frag_needed_frame(const uint8_t* frame, size_t len, int mtu, uint8_t* out);
  // Answers an oversize DF packet from port `p` with ICMP "fragmentation needed".
  void reply_frag_needed(Port& p, const uint8_t* frame, size_t len, int mtu);

  // NAT stage (uplink.cc). nat_egress: true when the frame was for the uplink (sent, or dropped and
  // counted); `in` is the local port it came from, null off the wire.
  bool nat_egress(Vni& v, Port* in, uint8_t* frame, size_t len);
  // A TCP super-frame from a TAP port, bound for the uplink whole (the caller has checked that no
  // per-frame stage needs its segments). kRefused: translated, but the kernel would not take it whole.
  enum class UplinkGso { kNotUplink, kSent, kRefused };
  UplinkGso nat_egress_gso(Vni& v, Port& in, uint8_t* frame, size_t len, const Tcp4Gso& g);
  bool uplink_write(const uint8_t* ip, size_t n);
  // One IPv4 packet read from the uplink at `ip`, with kVxlanHdr + kEthHdr bytes of headroom.
  void uplink_ingress(uint8_t* ip, size_t len, Sender& out);
  // NAT ingress and the neighbour lookup for a packet from the uplink whose segments are at most
  // `seg_len` IP bytes: its VNI, and the MAC in `mac`; null when dropped (counted).
  Vni* uplink_route(uint8_t* ip, size_t n, size_t seg_len, uint64_t* mac);
  // Writes the Ethernet header in front of a routed packet from the uplink (src: the gateway MAC).
  static void uplink_frame(const Vni& v, uint8_t* frame, uint64_t mac) {
    mac_write(frame, mac);
    std::memcpy(frame + 6, v.gw.mac, 6);
    wr16(frame + 12, kEtherIpv4);
  }
  // A translated TCP super-frame from the uplink written whole into the local TAP its destination MAC is
  // on; false when that cannot be (not local, no offload, a filter or capture to serve, refused).
  bool deliver_super_frame(Vni& v, uint8_t* frame, size_t len, const Tcp4Gso& g);
  void nat_sweep();

  Port* port_by_id(int id) {
    return id >= 0 && size_t(id) < ports_.size() ? ports_[id].get() : nullptr;
  }
  Vni* vni_by_id(uint32_t vni) {
    auto it = vnis_.find(vni);
    return it == vnis_.end() ? nullptr : it->second.get();
  }
  void wake_tx();

  EngineOptions opt_;
  RwLock cfg_mu_;
  std::vector<std::unique_ptr<Port>> ports_;
  std::unordered_map<uint32_t, std::unique_ptr<Vni>> vnis_;
  std::unordered_set<uint32_t> known_vteps_;  // read under cfg_mu_ shared, written under unique
  bool vteps_enforced_ = false;
  uint32_t next_gen_ = 1;
  Counters wire_;
  std::atomic<uint64_t> gso_fallbacks_{0};
  std::atomic<uint64_t> gro_fallbacks_{0};
  PuntTable punt_;

  LinkTable links_;
  CaptureTable captures_;
  uint16_t tx_ports_[kTxSockets] = {};  // source ports of tx_fds_, for wire capture records
  int uplink_fd_ = -1;        // the uplink TUN (IFF_NO_PI): IPv4 packets both ways
  int uplink_peer_fd_ = -1;   // a memory uplink's outside end
  int uplink_mtu_ = 1500;
  bool uplink_vnet_ = false;  // the uplink was opened with IFF_VNET_HDR: every read and write has the header
  // Super-frames go to it whole (until the kernel refuses one). Every TX pipeline reads it, any may clear it.
  std::atomic<bool> uplink_gso_{false};
  std::atomic<uint64_t> uplink_gso_writes_{0}, uplink_gso_reads_{0}, uplink_gso_fallbacks_{0};
  Counters uplink_c_;         // rx: read from the uplink; tx: written to it
  std::shared_ptr<nat::NatTable> nat_;
  std::unordered_map<uint32_t, uint32_t> routed_;  // routed address -> VNI
  int link_fd_ = -1;          // bound to 0.0.0.0:link_port (follows address changes); link_fds_[0]
  int rx_fd_ = -1;            // bound to underlay_ip:underlay_port; rx_fds_[0]
  std::vector<int> rx_fds_, link_fds_;  // one per RX pipeline (SO_REUSEPORT when more than one)
  int tx_fds_[kTxSockets];    // bound to underlay_ip:ephemeral, one per flow-hash bucket
  std::vector<int> epfds_;    // per TX pipeline: its queue of every port, its wake eventfd (and, for 0, the uplink)
  std::vector<int> wake_fds_; // eventfds: stop or configuration change
  std::unique_ptr<PipelineCounters[]> pipeline_c_;
  std::atomic<bool> running_{false};
  std::vector<std::thread> threads_;
};

}  // namespace appnet
