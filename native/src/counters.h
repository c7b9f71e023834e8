// Packet and byte counters with drops by reason. Several engine threads may add to the same
// block, so fields are relaxed atomics; JS reads a snapshot on demand.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace appnet {

enum Drop : int {
  kDropMalformed = 0,
  kDropUnknownVni,
  kDropNoDestination,
  kDropQueueFull,
  kDropOversize,
  kDropNoSession,    // encrypted VNI, but no usable session to the peer
  kDropUnencrypted,  // clear VXLAN arrived for an encrypted VNI
  kDropFiltered,     // refused by the port's filter (port_filter.h), either direction
  kDropNoUplink,     // for the uplink (off-net on a NAT network) but this host has none
  kDropNat,          // the NAT table refused it: the reason is counted in the table's stats
  kDropNoNeighbour,  // from the uplink to an address no instance of the network holds
  kDropUnknownVtep,  // clear VXLAN from an address that is not a known VTEP (Engine::set_known_vteps)
  kDropVniNotShared, // a link peer sent into a VNI whose flood list does not hold it
  kDropMacConflict,  // from the wire with the source MAC of a live local port
  kDropFdbFull,      // from the wire with a new source MAC while the VNI's FDB is at its limit
  kDropCount
};

inline const char* drop_name(int d) {
  static const char* names[kDropCount] = {"malformed", "unknown_vni", "no_destination",
                                          "queue_full", "oversize", "no_session", "unencrypted",
                                          "filtered", "no_uplink", "nat", "no_neighbour", "unknown_vtep",
                                          "vni_not_shared", "mac_conflict", "fdb_full"};
  return names[d];
}

struct Counters {
  std::atomic<uint64_t> rx_packets{0}, rx_bytes{0}, tx_packets{0}, tx_bytes{0};
  std::atomic<uint64_t> drops[kDropCount] = {};

  void rx(size_t bytes, uint64_t packets = 1) {
    rx_packets.fetch_add(packets, std::memory_order_relaxed);
    rx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
  void tx(size_t bytes, uint64_t packets = 1) {
    tx_packets.fetch_add(packets, std::memory_order_relaxed);
    tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
  void drop(Drop d, uint64_t n = 1) { drops[d].fetch_add(n, std::memory_order_relaxed); }
};

}  // namespace appnet
