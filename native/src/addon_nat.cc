// N-API face of the NAT core (nat.h): a NatTable class for the tests, the control module's policy
// and operators' listings. The engine will call nat::NatTable directly; nothing here is on the
// packet path except translate(), which exists for tests. Typed and validated in dataplane/nat.ts.
#include <napi.h>

#include <time.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon_util.h"
#include "nat.h"

namespace appnet {
namespace {

[[noreturn]] void type_error(const Napi::Env& env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

double num(const Napi::Env& env, const Napi::Value& v, const char* name, double max) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= max && d == double(uint64_t(d))))
    type_error(env, std::string(name) + " must be an integer in 0.." + std::to_string(uint64_t(max)));
  return d;
}
uint32_t u32(const Napi::Env& env, const Napi::Value& v, const char* name) {
  return uint32_t(num(env, v, name, 4294967295.0));
}
uint64_t ms(const Napi::Env& env, const Napi::Value& v) { return uint64_t(num(env, v, "nowMs", 9007199254740991.0)); }

uint8_t* bytes(const Napi::Env& env, const Napi::Value& v, const char* name, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    type_error(env, std::string(name) + " must be a Buffer or Uint8Array");
  auto a = v.As<Napi::Uint8Array>();
  *len = a.ByteLength();
  return a.Data();
}

Napi::Object counters_object(Napi::Env env, const nat::RuleCounters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("egressPackets", double(c.egress_packets));
  o.Set("egressBytes", double(c.egress_bytes));
  o.Set("ingressPackets", double(c.ingress_packets));
  o.Set("ingressBytes", double(c.ingress_bytes));
  return o;
}

// Marks NatTable objects, so that Engine.setNat can tell one from any other object it is given.
constexpr napi_type_tag kNatTableTag = {0x6170706e65744e41ull, 0x545461626c653031ull};

const char* action_name(nat::Action a) {
  switch (a) {
    case nat::Action::kTranslated: return "translated";
    case nat::Action::kPassthrough: return "passthrough";
    default: return "drop";
  }
}

nat::Dir dir_arg(const Napi::Env& env, const Napi::Value& v) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s != "egress" && s != "ingress") type_error(env, "direction must be 'egress' or 'ingress'");
  return s == "egress" ? nat::Dir::kEgress : nat::Dir::kIngress;
}

class NatTableWrap : public Napi::ObjectWrap<NatTableWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NatTable", {
      InstanceMethod<&NatTableWrap::AddSnat>("addSnat"),
      InstanceMethod<&NatTableWrap::RemoveSnat>("removeSnat"),
      InstanceMethod<&NatTableWrap::AddFloat>("addFloat"),
      InstanceMethod<&NatTableWrap::RemoveFloat>("removeFloat"),
      InstanceMethod<&NatTableWrap::Translate>("translate"),
      InstanceMethod<&NatTableWrap::Sweep>("sweep"),
      InstanceMethod<&NatTableWrap::Stats>("stats"),
      InstanceMethod<&NatTableWrap::Flows>("flows"),
      InstanceMethod<&NatTableWrap::Rules>("rules"),
      InstanceMethod<&NatTableWrap::BenchTranslate>("benchTranslate"),
    });
  }

  // new NatTable(capacity, seed: bigint, timeouts: { tcpSynSent, ..., icmp } (seconds, all present))
  explicit NatTableWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NatTableWrap>(info) {
    Napi::Env env = info.Env();
    uint32_t capacity = u32(env, info[0], "capacity");
    bool lossless = false;
    uint64_t seed = info[1].IsBigInt() ? info[1].As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    if (!lossless) type_error(env, "seed must be a bigint in 0n..2n**64n-1n");
    Napi::Object o = info[2].As<Napi::Object>();
    nat::Timeouts t;
    auto get = [&](const char* k) { return u32(env, o.Get(k), k); };
    t.tcp_syn_sent = get("tcpSynSent");
    t.tcp_syn_recv = get("tcpSynRecv");
    t.tcp_established = get("tcpEstablished");
    t.tcp_fin_wait = get("tcpFinWait");
    t.tcp_last_ack = get("tcpLastAck");
    t.tcp_time_wait = get("tcpTimeWait");
    t.tcp_close = get("tcpClose");
    t.udp = get("udp");
    t.udp_assured = get("udpAssured");
    t.icmp = get("icmp");
    table_ = guard(env, [&] { return std::make_shared<nat::NatTable>(capacity, t, seed); });
    napi_type_tag_object(env, info.This(), &kNatTableTag);
  }

  std::shared_ptr<nat::NatTable> table() const { return table_; }

 private:
  // addSnat(vni, insideNet, prefix, external, portMin, portMax)
  Napi::Value AddSnat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nat::SnatRule r;
    r.vni = u32(env, info[0], "vni");
    r.inside_net = u32(env, info[1], "insideNet");
    r.prefix = uint8_t(num(env, info[2], "prefix", 32));
    r.external = u32(env, info[3], "external");
    r.port_min = uint16_t(num(env, info[4], "portMin", 65535));
    r.port_max = uint16_t(num(env, info[5], "portMax", 65535));
    guard(env, [&] { table_->add_snat(r); });
    return env.Undefined();
  }
  Napi::Value RemoveSnat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool ok = table_->remove_snat(u32(env, info[0], "vni"), u32(env, info[1], "insideNet"),
                                  uint8_t(num(env, info[2], "prefix", 32)));
    return Napi::Boolean::New(env, ok);
  }
  // addFloat(vni, inside, external)
  Napi::Value AddFloat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nat::FloatRule r;
    r.vni = u32(env, info[0], "vni");
    r.inside = u32(env, info[1], "inside");
    r.external = u32(env, info[2], "external");
    guard(env, [&] { table_->add_float(r); });
    return env.Undefined();
  }
  Napi::Value RemoveFloat(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), table_->remove_float(u32(info.Env(), info[0], "external")));
  }
  // translate(direction, vni, packet, nowMs) -> { action, reason, vni }; rewrites packet in place.
  Napi::Value Translate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nat::Dir d = dir_arg(env, info[0]);
    uint32_t vni = u32(env, info[1], "vni");
    size_t len = 0;
    uint8_t* p = bytes(env, info[2], "packet", &len);
    nat::Verdict v = table_->translate(d, vni, p, len, ms(env, info[3]));
    Napi::Object o = Napi::Object::New(env);
    o.Set("action", action_name(v.action));
    o.Set("reason", nat::reason_name(v.reason));
    o.Set("vni", double(v.vni));
    return o;
  }
  Napi::Value Sweep(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), table_->sweep(ms(info.Env(), info[0])));
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nat::Stats s = table_->stats();
    Napi::Object o = Napi::Object::New(env);
    Napi::Object drops = Napi::Object::New(env);
    for (int i = 1; i < nat::kReasonCount; i++) drops.Set(nat::reason_name(i), double(s.drops[i]));
    o.Set("drops", drops);
    auto pair = [&](const uint64_t* v) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("egress", double(v[0]));
      p.Set("ingress", double(v[1]));
      return p;
    };
    o.Set("translated", pair(s.translated));
    o.Set("passthrough", pair(s.passthrough));
    o.Set("flowsCreated", double(s.flows_created));
    o.Set("flowsExpired", double(s.flows_expired));
    o.Set("flowsFlushed", double(s.flows_flushed));
    o.Set("entries", s.entries);
    o.Set("capacity", s.capacity);
    return o;
  }
  Napi::Value Flows(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto flows = table_->flows();
    Napi::Array out = Napi::Array::New(env, flows.size());
    for (size_t i = 0; i < flows.size(); i++) {
      const nat::Flow& f = flows[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("vni", double(f.vni));
      o.Set("proto", f.proto);
      o.Set("inside", double(f.inside));
      o.Set("insidePort", f.inside_port);
      o.Set("remote", double(f.remote));
      o.Set("remotePort", f.remote_port);
      o.Set("external", double(f.external));
      o.Set("externalPort", f.external_port);
      o.Set("tcpState", nat::tcp_state_name(f.tcp_state));
      o.Set("seenReply", f.seen_reply);
      o.Set("expiresMs", double(f.expires_ms));
      out.Set(uint32_t(i), o);
    }
    return out;
  }
  Napi::Value Rules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Array snat = Napi::Array::New(env);
    uint32_t n = 0;
    for (auto& [r, c] : table_->snat_rules()) {
      Napi::Object o = counters_object(env, c);
      o.Set("vni", double(r.vni));
      o.Set("insideNet", double(r.inside_net));
      o.Set("prefix", r.prefix);
      o.Set("external", double(r.external));
      o.Set("portMin", r.port_min);
      o.Set("portMax", r.port_max);
      snat.Set(n++, o);
    }
    Napi::Array floats = Napi::Array::New(env);
    n = 0;
    for (auto& [r, c] : table_->float_rules()) {
      Napi::Object o = counters_object(env, c);
      o.Set("vni", double(r.vni));
      o.Set("inside", double(r.inside));
      o.Set("external", double(r.external));
      floats.Set(n++, o);
    }
    out.Set("snat", snat);
    out.Set("floats", floats);
    return out;
  }
  // benchTranslate(direction, vni, packet, iterations, nowMs) -> nanoseconds for `iterations`
  // translations of fresh copies of `packet` inside native code (one N-API call in all), so the
  // figure is the per-packet cost the engine will pay, copy included.
  Napi::Value BenchTranslate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    nat::Dir d = dir_arg(env, info[0]);
    uint32_t vni = u32(env, info[1], "vni");
    size_t len = 0;
    const uint8_t* p = bytes(env, info[2], "packet", &len);
    uint32_t n = u32(env, info[3], "iterations");
    uint64_t now = ms(env, info[4]);
    std::vector<uint8_t> buf(len);
    uint64_t translated = 0;
    timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (uint32_t i = 0; i < n; i++) {
      std::memcpy(buf.data(), p, len);
      translated += table_->translate(d, vni, buf.data(), len, now).action == nat::Action::kTranslated;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (translated != n) throw Napi::Error::New(env, "benchTranslate: the packet was not translated every time");
    return Napi::Number::New(env, double(b.tv_sec - a.tv_sec) * 1e9 + double(b.tv_nsec - a.tv_nsec));
  }

  // Shared with the engine once attached (Engine.setNat): it lives while either holds it.
  std::shared_ptr<nat::NatTable> table_;
};

}  // namespace

std::shared_ptr<nat::NatTable> nat_table_of(const Napi::Value& v) {
  bool tagged = false;
  if (v.IsObject()) napi_check_object_type_tag(v.Env(), v, &kNatTableTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(v.Env(), "nat must be a NatTable");
  return NatTableWrap::Unwrap(v.As<Napi::Object>())->table();
}

void RegisterNat(Napi::Env env, Napi::Object exports) { exports.Set("NatTable", NatTableWrap::Define(env)); }

}  // namespace appnet
