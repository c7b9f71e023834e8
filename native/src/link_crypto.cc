// Data message seal/open over libsodium's detached ChaCha20-Poly1305-IETF: the detached calls let
// the ciphertext and tag land exactly where the wire format puts them, so no copy and no allocation.
#include "link_crypto.h"

#include <sodium.h>

namespace appnet {
namespace link {
namespace {

static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == kKeyLen, "key length");
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == kNonceLen, "nonce length");
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kTag, "tag length");

constexpr size_t kOffType = 0;
constexpr size_t kOffReceiver = 4;
constexpr size_t kOffCounter = 8;

inline void wr32le(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
inline void wr64le(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = uint8_t(v >> (8 * i));
}
inline uint32_t rd32le(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t rd64le(const uint8_t* p) {
  return uint64_t(rd32le(p)) | uint64_t(rd32le(p + 4)) << 32;
}

// The nonce is the counter, so (key, counter) must never repeat: the session's send counter and the
// kRejectAfterMessages limit guarantee that, not this file.
inline void nonce_of(uint64_t counter, uint8_t nonce[kNonceLen]) {
  nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
  wr64le(nonce + 4, counter);
}

}  // namespace

bool init() {
  // sodium_init returns 0 the first time, 1 when already initialised, -1 on failure.
  return sodium_init() >= 0;
}

HeaderError check_data_header(const uint8_t* msg, size_t len, DataHeader* h) {
  if (len < kOverhead) return HeaderError::kShort;
  if (msg[kOffType] != kTypeData) return HeaderError::kType;
  if (msg[1] | msg[2] | msg[3]) return HeaderError::kReserved;
  h->receiver = rd32le(msg + kOffReceiver);
  h->counter = rd64le(msg + kOffCounter);
  return HeaderError::kNone;
}

size_t seal(const uint8_t key[kKeyLen], uint32_t receiver, uint64_t counter, const uint8_t* pt, size_t pt_len,
            uint8_t* out) {
  if (counter >= kRejectAfterMessages) return 0;
  // In place, out[0..kHeader) is the headroom in front of pt, so writing the header first is safe
  // and lets it serve directly as the associated data.
  out[kOffType] = kTypeData;
  out[1] = out[2] = out[3] = 0;
  wr32le(out + kOffReceiver, receiver);
  wr64le(out + kOffCounter, counter);
  uint8_t nonce[kNonceLen];
  nonce_of(counter, nonce);
  uint8_t* ct = out + kHeader;
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(ct, ct + pt_len, nullptr, pt, pt_len, out, kHeader, nullptr,
                                                     nonce, key);
  return pt_len + kOverhead;
}

long open(const uint8_t key[kKeyLen], const uint8_t* msg, size_t len, uint8_t* pt_out) {
  if (len < kOverhead) return -1;
  size_t ct_len = len - kOverhead;
  uint8_t nonce[kNonceLen];
  nonce_of(rd64le(msg + kOffCounter), nonce);
  const uint8_t* ct = msg + kHeader;
  // libsodium verifies the tag before decrypting, so a forged message costs one Poly1305 pass.
  int rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(pt_out, nullptr, ct, ct_len, ct + ct_len, msg, kHeader,
                                                              nonce, key);
  return rc == 0 ? long(ct_len) : -1;
}

}  // namespace link
}  // namespace appnet
