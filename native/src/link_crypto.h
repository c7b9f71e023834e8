// Encrypted link transport: the data message (type 4) that wraps one VXLAN datagram.
// The format is WireGuard's transport message; docs/link-transport.md is the reference for operators.
//
//   offset 0  type      u8  = 4
//          1  reserved  3 bytes, zero
//          4  receiver  u32 LE   the receiver's session index
//          8  counter   u64 LE   per-session send counter, from 0
//         16  ciphertext         ChaCha20 of the plaintext (VXLAN header + inner frame; empty = keepalive)
//   16 + len  tag       16 bytes Poly1305
//
// AEAD: ChaCha20-Poly1305-IETF; nonce = 4 zero bytes || counter u64 LE; associated data = the 16 clear
// header bytes, so the receiver index and counter cannot be altered in flight.
//
// Contract for the engine threads: these functions never allocate, lock or throw, and work either
// src -> dst or in place (layout below). dataplane/wire/link.ts is the TypeScript reference; the
// differential test (test/17-link-crypto.test.ts) requires both to produce identical bytes.
#pragma once
#include <cstddef>
#include <cstdint>

namespace appnet {
namespace link {

constexpr size_t kHeader = 16;
constexpr size_t kTag = 16;
constexpr size_t kOverhead = kHeader + kTag;  // on top of the VXLAN datagram
constexpr size_t kKeyLen = 32;
constexpr size_t kNonceLen = 12;

// Message types; 1..3 belong to the handshake (docs/link-handshake.md), only 4 is handled here.
constexpr uint8_t kTypeInit = 1;
constexpr uint8_t kTypeResp = 2;
constexpr uint8_t kTypeCookie = 3;
constexpr uint8_t kTypeData = 4;
// Handshake messages have one size each (dataplane/link/messages.ts): anything else is never punted.
constexpr size_t kInitLen = 148;
constexpr size_t kRespLen = 92;
constexpr size_t kCookieLen = 64;
inline bool handshake_size_ok(uint8_t type, size_t len) {
  return (type == kTypeInit && len == kInitLen) || (type == kTypeResp && len == kRespLen) || (type == kTypeCookie && len == kCookieLen);
}

// WireGuard's limits: a session asks for a new handshake after 2^60 messages, and never sends or
// accepts a counter at or above 2^64 - 2^13 - 1 (leaves room for in-flight messages while rekeying).
constexpr uint64_t kRekeyAfterMessages = uint64_t(1) << 60;
constexpr uint64_t kRejectAfterMessages = ~uint64_t(0) - (uint64_t(1) << 13);  // 2^64 - 2^13 - 1

// Initialises libsodium (picks the fastest ChaCha20 implementation for this CPU). Idempotent and
// thread-safe; call once before the first seal/open. False if libsodium could not initialise.
bool init();

struct DataHeader {
  uint32_t receiver;
  uint64_t counter;
};

// Why a message is not a well-formed data message, in the order the checks run.
enum class HeaderError { kNone = 0, kShort, kType, kReserved };

// Checks the clear header of a received message: len >= kOverhead (a keepalive is the shortest
// data message), type 4, reserved bytes zero. Fills *h only on kNone.
HeaderError check_data_header(const uint8_t* msg, size_t len, DataHeader* h);

// The same check as a yes/no for the engine's hot path.
inline bool parse_data_header(const uint8_t* msg, size_t len, DataHeader* h) {
  return check_data_header(msg, len, h) == HeaderError::kNone;
}

// Seals `pt[0..pt_len)` as a data message at `out` and returns its length (pt_len + kOverhead).
// `out` must have room for pt_len + kOverhead bytes. Either `out` does not overlap `pt`, or
// out == pt - kHeader (in place: the caller leaves kHeader bytes of headroom in front of the
// plaintext and kTag bytes of tailroom after it). Returns 0, writing nothing, if
// counter >= kRejectAfterMessages: the session must rekey instead.
size_t seal(const uint8_t key[kKeyLen], uint32_t receiver, uint64_t counter, const uint8_t* pt, size_t pt_len,
            uint8_t* out);

// Verifies and decrypts a data message into `pt_out` and returns the plaintext length
// (len - kOverhead), or -1 if len < kOverhead or the tag does not verify (wrong key, or any byte of
// header, ciphertext or tag altered). Does not check type/reserved (call parse_data_header first to
// route the message) nor the replay window (check before, mark after a successful open).
// `pt_out` may equal msg + kHeader (in place) or must not overlap msg. On failure libsodium zeroes
// pt_out[0..len - kOverhead), so an in-place message is destroyed: drop it.
long open(const uint8_t key[kKeyLen], const uint8_t* msg, size_t len, uint8_t* pt_out);

}  // namespace link
}  // namespace appnet
