// Helpers shared by the N-API binding files: argument conversion and C++ exceptions turned into JS errors.
#pragma once
#include <napi.h>

#include <cstdint>
#include <stdexcept>

#include "engine.h"
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

// The Engine constructor's options object (dataplane/native.ts): offload switches default on, but tapGroUdp.
inline EngineOptions engine_options_of(const Napi::Object& o) {
  EngineOptions opt;
  opt.underlay_ip = u32(o.Get("underlayAddress"));
  opt.underlay_port = uint16_t(opt_int(o, "underlayPort", 4789));
  opt.ageing_ms = uint32_t(opt_int(o, "ageingMs", 300000));
  opt.fdb_limit = uint32_t(opt_int(o, "fdbLimit", 16384));
  auto flag = [&](const char* k, bool dflt = true) { return o.Get(k).IsBoolean() ? o.Get(k).As<Napi::Boolean>().Value() : dflt; };
  opt.udp_gso = flag("udpGso");
  opt.udp_gro = flag("udpGro");
  opt.tap_offload = flag("tapOffload");
  opt.tap_gro = flag("tapGro");
  opt.tap_gro_udp = flag("tapGroUdp", false);
  opt.uplink_offload = flag("uplinkOffload");
  opt.link_port = uint16_t(opt_int(o, "linkPort", 0));
  opt.threads = int(opt_int(o, "threads", 1));
  if (o.Get("cpus").IsArray()) {
    Napi::Array a = o.Get("cpus").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) opt.cpus.push_back(i32(a.Get(i)));
  }
  return opt;
}

}  // namespace appnet
