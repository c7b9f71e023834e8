// Port filter: the one conversation an application connection's port may carry (docs/port-filter.md).
// A connection's VNI has two ports, the outbound side (dials peer:port) and the inbound side (serves
// local:port). The engine checks every frame the instance sends, before it is punted or switched,
// and every frame about to be delivered to the port (before it joins a TAP super-frame), so neither
// a compromised instance nor a compromised peer reaches anything but that one port.
// Pure: a verdict over caller-owned bytes, reading headers only. dataplane/wire/port-filter.ts is
// the TypeScript twin; the verdicts, and the order they are decided in, are the shared contract.
#pragma once
#include <cstddef>
#include <cstdint>

#include "wire.h"

namespace appnet {

struct PortFilter {
  uint32_t local;  // this port's address on the link (host order)
  uint32_t peer;   // the other end's
  uint8_t proto;   // 6 (TCP) or 17 (UDP)
  uint16_t port;   // the inbound's port
  bool inbound;    // true: the instance serves local:port; false: it dials peer:port
};

// From the instance's point of view: a frame it sends, or a frame about to be delivered to it.
enum class FilterDir { kSend = 0, kReceive = 1 };

// Why a frame was refused; kAllowed lets it pass. Decided in this order.
enum class FilterVerdict {
  kAllowed = 0,
  kTruncated,    // shorter than the headers the rule reads (Ethernet, ARP, IPv4, TCP/UDP)
  kEthertype,    // neither ARP nor IPv4 (IPv6, VLAN tags, anything else)
  kArpFormat,    // ARP, but not Ethernet/IPv4 with 6- and 4-byte addresses
  kArpAddress,   // ARP whose sender and target are not the link's two addresses
  kIpHeader,     // IPv4 header fields that do not hold together (version, IHL, total length)
  kFragment,     // a non-first fragment: it carries no ports
  kProtocol,     // not the filter's protocol (ICMP included)
  kAddress,      // source or destination is not the expected end of the link
  kPort,         // not to (or from) the inbound's port
  kCount
};

inline const char* filter_verdict_name(FilterVerdict v) {
  static const char* names[int(FilterVerdict::kCount)] = {
      "allowed", "truncated", "ethertype", "arp_format", "arp_address",
      "ip_header", "fragment", "protocol", "address", "port"};
  return names[int(v)];
}

inline FilterVerdict port_filter_check(const PortFilter& f, const uint8_t* fr, size_t len, FilterDir dir) {
  if (len < kEthHdr) return FilterVerdict::kTruncated;
  uint16_t et = rd16(fr + 12);
  if (et == kEtherArp) {
    if (len < kEthHdr + 28) return FilterVerdict::kTruncated;
    const uint8_t* a = fr + kEthHdr;
    if (rd16(a) != 1 || rd16(a + 2) != kEtherIpv4 || a[4] != 6 || a[5] != 4) return FilterVerdict::kArpFormat;
    uint32_t spa = rd32(a + 14), tpa = rd32(a + 24);
    bool ok = (spa == f.local && tpa == f.peer) || (spa == f.peer && tpa == f.local);
    return ok ? FilterVerdict::kAllowed : FilterVerdict::kArpAddress;
  }
  if (et != kEtherIpv4) return FilterVerdict::kEthertype;
  Ipv4View ip;
  switch (ipv4_check(fr + kEthHdr, len - kEthHdr, &ip)) {
    case Ipv4Error::kTruncated: return FilterVerdict::kTruncated;
    case Ipv4Error::kHeader: return FilterVerdict::kIpHeader;
    case Ipv4Error::kNone: break;
  }
  if (!ip.first_fragment) return FilterVerdict::kFragment;
  if (ip.proto != f.proto) return FilterVerdict::kProtocol;
  L4Ports ports;
  if (!l4_ports(ip, &ports)) return FilterVerdict::kIpHeader;  // the TCP or UDP header does not fit the packet
  bool send = dir == FilterDir::kSend;
  if (ip.src != (send ? f.local : f.peer) || ip.dst != (send ? f.peer : f.local)) return FilterVerdict::kAddress;
  // The inbound's port is the destination port of what flows towards the inbound side.
  bool towards_inbound = send != f.inbound;
  uint16_t svc = towards_inbound ? ports.dst : ports.src;
  return svc == f.port ? FilterVerdict::kAllowed : FilterVerdict::kPort;
}

inline bool port_filter_allows(const PortFilter& f, const uint8_t* fr, size_t len, FilterDir dir) {
  return port_filter_check(f, fr, len, dir) == FilterVerdict::kAllowed;
}

}  // namespace appnet
