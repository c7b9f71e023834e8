// What the NAT table's two files share (nat.cc: the table, rules and flow index; nat_translate.cc: the rewrites).
#pragma once
#include <cstdint>

#include "wire.h"

namespace appnet::nat::internal {

constexpr uint8_t kIcmp = 1, kTcp = 6, kUdp = 17;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr uint8_t kEchoReply = 0, kEchoRequest = 8;
constexpr uint32_t kMaxProbes = 256;  // external ports tried for one new flow before giving up

inline bool icmp_is_error(uint8_t type) { return type == 3 || type == 11 || type == 12; }  // unreach, time exceeded, param
inline bool is_fragment(const uint8_t* ip) { return (rd16(ip + 6) & 0x3fff) != 0; }  // MF set or offset != 0
inline bool later_fragment(const uint8_t* ip) { return (rd16(ip + 6) & 0x1fff) != 0; }

inline uint64_t mix(uint64_t x) {  // murmur3's 64-bit finaliser
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

inline uint32_t mask_of(uint8_t prefix) { return prefix ? ~uint32_t(0) << (32 - prefix) : 0; }
inline uint64_t inside_key(uint32_t vni, uint32_t addr) { return uint64_t(vni) << 32 | addr; }

}  // namespace appnet::nat::internal
