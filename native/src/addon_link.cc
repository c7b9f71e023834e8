// N-API face of the link transport primitives (link_crypto.h, replay.h), for the differential tests
// and tools. The engine calls the C++ functions directly; nothing here is on the packet path.
#include <napi.h>

#include <time.h>

#include <cstring>
#include <string>
#include <vector>

#include "link_crypto.h"
#include "replay.h"

namespace appnet {
namespace {

[[noreturn]] void type_error(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

// A Uint8Array (Buffer included) argument, of exactly `len` bytes unless len is 0.
Napi::Uint8Array bytes_arg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t len = 0) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    type_error(info.Env(), std::string(name) + " must be a Buffer or Uint8Array");
  }
  auto a = v.As<Napi::Uint8Array>();
  if (len && a.ByteLength() != len) {
    type_error(info.Env(), std::string(name) + " must be " + std::to_string(len) + " bytes, got " +
                               std::to_string(a.ByteLength()));
  }
  return a;
}

uint32_t u32_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= 4294967295.0 && d == double(uint64_t(d)))) {
    type_error(info.Env(), std::string(name) + " must be an integer in 0..4294967295");
  }
  return uint32_t(d);
}

uint64_t u64_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  bool lossless = false;
  uint64_t c = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
  if (!lossless) type_error(info.Env(), std::string(name) + " must be a bigint in 0n..2n**64n-1n");
  return c;
}

// linkSeal(key, receiver, counter, plaintext) -> Buffer
Napi::Value LinkSeal(const Napi::CallbackInfo& info) {
  auto key = bytes_arg(info, 0, "key", link::kKeyLen);
  uint32_t receiver = u32_arg(info, 1, "receiver");
  uint64_t counter = u64_arg(info, 2, "counter");
  auto pt = bytes_arg(info, 3, "plaintext");
  if (counter >= link::kRejectAfterMessages) {
    type_error(info.Env(), "counter must be below REJECT_AFTER_MESSAGES (2^64 - 2^13 - 1): the session must rekey");
  }
  auto out = Napi::Buffer<uint8_t>::New(info.Env(), pt.ByteLength() + link::kOverhead);
  link::seal(key.Data(), receiver, counter, pt.Data(), pt.ByteLength(), out.Data());
  return out;
}

// linkOpen(key, message) -> { receiver, counter, plaintext } | { error }
Napi::Value LinkOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = bytes_arg(info, 0, "key", link::kKeyLen);
  auto msg = bytes_arg(info, 1, "message");
  Napi::Object o = Napi::Object::New(env);
  link::DataHeader h;
  switch (link::check_data_header(msg.Data(), msg.ByteLength(), &h)) {
    case link::HeaderError::kNone: break;
    case link::HeaderError::kShort: o.Set("error", "short"); return o;
    case link::HeaderError::kType: o.Set("error", "type"); return o;
    case link::HeaderError::kReserved: o.Set("error", "reserved"); return o;
  }
  auto pt = Napi::Buffer<uint8_t>::New(env, msg.ByteLength() - link::kOverhead);
  if (link::open(key.Data(), msg.Data(), msg.ByteLength(), pt.Data()) < 0) {
    o.Set("error", "tag");
    return o;
  }
  o.Set("receiver", double(h.receiver));
  o.Set("counter", Napi::BigInt::New(env, h.counter));
  o.Set("plaintext", pt);
  return o;
}

// linkSealInPlace(key, receiver, counter, plaintext) -> Buffer: the engine's in-place layout (header
// written into headroom in front of the plaintext, tag into tailroom after it), for the tests.
Napi::Value LinkSealInPlace(const Napi::CallbackInfo& info) {
  auto key = bytes_arg(info, 0, "key", link::kKeyLen);
  uint32_t receiver = u32_arg(info, 1, "receiver");
  uint64_t counter = u64_arg(info, 2, "counter");
  auto pt = bytes_arg(info, 3, "plaintext");
  size_t n = pt.ByteLength();
  auto buf = Napi::Buffer<uint8_t>::New(info.Env(), n + link::kOverhead);
  std::memcpy(buf.Data() + link::kHeader, pt.Data(), n);
  if (link::seal(key.Data(), receiver, counter, buf.Data() + link::kHeader, n, buf.Data()) == 0) {
    type_error(info.Env(), "counter must be below REJECT_AFTER_MESSAGES (2^64 - 2^13 - 1): the session must rekey");
  }
  return buf;
}

// linkOpenInPlace(key, message) -> Buffer | null: opens a copy of message in place and returns the
// plaintext view into it (message + 16), or null when the header or tag is refused.
Napi::Value LinkOpenInPlace(const Napi::CallbackInfo& info) {
  auto key = bytes_arg(info, 0, "key", link::kKeyLen);
  auto msg = bytes_arg(info, 1, "message");
  auto buf = Napi::Buffer<uint8_t>::Copy(info.Env(), msg.Data(), msg.ByteLength());
  link::DataHeader h;
  if (!link::parse_data_header(buf.Data(), buf.Length(), &h)) return info.Env().Null();
  long n = link::open(key.Data(), buf.Data(), buf.Length(), buf.Data() + link::kHeader);
  if (n < 0) return info.Env().Null();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), buf.Data() + link::kHeader, size_t(n));
}

// linkCryptoLoop(op, size, iterations) -> nanoseconds for `iterations` seals ('seal') or opens
// ('open') of a `size`-byte plaintext inside native code, for bench/link-crypto.ts: the per-packet
// cost the engine pays, without an N-API call per packet. Seal runs in place, as the engine's TX does.
Napi::Value LinkCryptoLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string op = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (op != "seal" && op != "open") type_error(env, "op must be 'seal' or 'open'");
  uint32_t size = u32_arg(info, 1, "size");
  uint32_t n = u32_arg(info, 2, "iterations");
  uint8_t key[link::kKeyLen];
  for (size_t i = 0; i < sizeof key; i++) key[i] = uint8_t(i * 7 + 1);
  std::vector<uint8_t> buf(size + link::kOverhead, 0xa5), pt(size);
  size_t len = link::seal(key, 1, 0, buf.data() + link::kHeader, size, buf.data());
  uint64_t acc = 0;
  timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (op == "seal") {
    for (uint32_t i = 0; i < n; i++) acc += link::seal(key, 1, i, buf.data() + link::kHeader, size, buf.data());
  } else {
    for (uint32_t i = 0; i < n; i++) acc += uint64_t(link::open(key, buf.data(), len, pt.data()));
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (acc != uint64_t(n) * (op == "seal" ? len : size)) throw Napi::Error::New(env, "linkCryptoLoop: an operation failed");
  return Napi::Number::New(env, double(b.tv_sec - a.tv_sec) * 1e9 + double(b.tv_nsec - a.tv_nsec));
}

class ReplayWindowWrap : public Napi::ObjectWrap<ReplayWindowWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ReplayWindow", {
      InstanceMethod<&ReplayWindowWrap::Check>("check"),
      InstanceMethod<&ReplayWindowWrap::Mark>("mark"),
      InstanceMethod<&ReplayWindowWrap::Reset>("reset"),
    });
  }
  explicit ReplayWindowWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReplayWindowWrap>(info) {}

 private:
  Napi::Value Check(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), w_.check(u64_arg(info, 0, "counter")));
  }
  Napi::Value Mark(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), w_.mark(u64_arg(info, 0, "counter")));
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    w_.reset();
    return info.Env().Undefined();
  }

  link::ReplayWindow w_;
};

}  // namespace

void RegisterLink(Napi::Env env, Napi::Object exports) {
  if (!link::init()) throw Napi::Error::New(env, "libsodium failed to initialise (sodium_init)");
  exports.Set("linkSeal", Napi::Function::New(env, LinkSeal));
  exports.Set("linkOpen", Napi::Function::New(env, LinkOpen));
  exports.Set("linkSealInPlace", Napi::Function::New(env, LinkSealInPlace));
  exports.Set("linkOpenInPlace", Napi::Function::New(env, LinkOpenInPlace));
  exports.Set("linkCryptoLoop", Napi::Function::New(env, LinkCryptoLoop));
  exports.Set("ReplayWindow", ReplayWindowWrap::Define(env));
}

}  // namespace appnet
