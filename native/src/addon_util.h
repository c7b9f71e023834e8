// Helpers shared by the N-API binding files: argument conversion and C++ exceptions turned into JS errors.
#pragma once
#include <napi.h>

#include <cstdint>
#include <stdexcept>

#include "port_filter.h"
#include "wire.h"

namespace appnet {

// Runs `f`, turning std::invalid_argument into a RangeError and any other std::exception into an Error.
template <typename F>
inline auto guard(const Napi::Env& env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

inline uint32_t u32(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }
inline int i32(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }

inline int opt_int(const Napi::Object& o, const char* k, int dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}

inline uint64_t mac_of(const Napi::Value& v) {
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (b.Length() != 6) throw std::invalid_argument("a MAC address is 6 bytes");
  return mac_key(b.Data());
}

// { local: u32, peer: u32, protocol: 6 | 17, port, inbound: bool }, validated in dataplane/engine.ts.
inline PortFilter port_filter_of(const Napi::Value& v) {
  Napi::Object o = v.As<Napi::Object>();
  PortFilter f;
  f.local = u32(o.Get("local"));
  f.peer = u32(o.Get("peer"));
  f.proto = uint8_t(u32(o.Get("protocol")));
  f.port = uint16_t(u32(o.Get("port")));
  f.inbound = o.Get("inbound").ToBoolean().Value();
  return f;
}

}  // namespace appnet
