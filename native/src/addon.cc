// N-API bindings: the Engine class and the codec functions the differential tests call.
// Arguments are validated in dataplane/engine.ts; here we only convert and translate errors.
#include <arpa/inet.h>
#include <napi.h>

#include <time.h>

#include <cstring>
#include <memory>
#include <vector>

#include "engine.h"
#include "memory_device.h"
#include "gro.h"
#include "offload.h"
#include "port_filter.h"
#include "wire.h"

namespace appnet {
void RegisterLink(Napi::Env env, Napi::Object exports);  // addon_link.cc
void RegisterNat(Napi::Env env, Napi::Object exports);   // addon_nat.cc
std::shared_ptr<nat::NatTable> nat_table_of(const Napi::Value& v);  // addon_nat.cc
namespace {

template <typename F>
auto guard(const Napi::Env& env, F&& f) -> decltype(f()) {
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

uint32_t u32(const Napi::Value& v) { return v.As<Napi::Number>().Uint32Value(); }
int i32(const Napi::Value& v) { return v.As<Napi::Number>().Int32Value(); }

int opt_int(const Napi::Object& o, const char* k, int dflt) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Int32Value() : dflt;
}

uint64_t mac_of(const Napi::Value& v) {
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (b.Length() != 6) throw std::invalid_argument("a MAC address is 6 bytes");
  return mac_key(b.Data());
}

// { local: u32, peer: u32, protocol: 6 | 17, port, inbound: bool }, validated in dataplane/engine.ts.
PortFilter port_filter_of(const Napi::Value& v) {
  Napi::Object o = v.As<Napi::Object>();
  PortFilter f;
  f.local = u32(o.Get("local"));
  f.peer = u32(o.Get("peer"));
  f.proto = uint8_t(u32(o.Get("protocol")));
  f.port = uint16_t(u32(o.Get("port")));
  f.inbound = o.Get("inbound").ToBoolean().Value();
  return f;
}

Napi::Object counters_object(Napi::Env env, const Counters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rx_packets", double(c.rx_packets.load()));
  o.Set("rx_bytes", double(c.rx_bytes.load()));
  o.Set("tx_packets", double(c.tx_packets.load()));
  o.Set("tx_bytes", double(c.tx_bytes.load()));
  Napi::Object d = Napi::Object::New(env);
  for (int i = 0; i < kDropCount; i++) d.Set(drop_name(i), double(c.drops[i].load()));
  o.Set("drops", d);
  return o;
}

Napi::Object link_counters(Napi::Env env, const LinkCounters& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("tx_packets", double(c.tx_packets.load()));
  o.Set("tx_bytes", double(c.tx_bytes.load()));
  o.Set("rx_packets", double(c.rx_packets.load()));
  o.Set("rx_bytes", double(c.rx_bytes.load()));
  o.Set("keepalives_tx", double(c.keepalives_tx.load()));
  o.Set("keepalives_rx", double(c.keepalives_rx.load()));
  o.Set("roams", double(c.roams.load()));
  o.Set("handshakes_rx", double(c.handshakes_rx.load()));
  Napi::Object d = Napi::Object::New(env);
  for (int i = 0; i < kLinkDropCount; i++) d.Set(link_drop_name(i), double(c.drops[i].load()));
  o.Set("drops", d);
  return o;
}

Napi::Buffer<uint8_t> mac_buffer(Napi::Env env, uint64_t k) {
  auto b = Napi::Buffer<uint8_t>::New(env, 6);
  mac_write(b.Data(), k);
  return b;
}

// addPortAsync's pool-thread half. Holds a reference to the Engine's JS object, so the engine outlives it.
class AddPortWorker : public Napi::AsyncWorker {
 public:
  AddPortWorker(Napi::Env env, Napi::Object owner, Engine* engine, Engine::PortSpec spec)
      : Napi::AsyncWorker(env, "appnet-add-port"),
        deferred_(Napi::Promise::Deferred::New(env)),
        owner_(Napi::Persistent(owner)),
        engine_(engine),
        spec_(std::move(spec)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      id_ = engine_->add_port(spec_);
    } catch (const std::invalid_argument& e) {
      range_error_ = true;  // as guard() does for the synchronous call: the caller's input
      SetError(e.what());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), id_)); }
  void OnError(const Napi::Error& e) override {
    if (range_error_) deferred_.Reject(Napi::RangeError::New(Env(), e.Message()).Value());
    else deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference owner_;
  Engine* engine_;
  Engine::PortSpec spec_;
  int id_ = -1;
  bool range_error_ = false;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine", {
      InstanceMethod<&EngineWrap::Start>("start"),
      InstanceMethod<&EngineWrap::Stop>("stop"),
      InstanceMethod<&EngineWrap::AddVni>("addVni"),
      InstanceMethod<&EngineWrap::RemoveVni>("removeVni"),
      InstanceMethod<&EngineWrap::SetFlood>("setFlood"),
      InstanceMethod<&EngineWrap::SetKnownVteps>("setKnownVteps"),
      InstanceMethod<&EngineWrap::AddPort>("addPort"),
      InstanceMethod<&EngineWrap::AddPortAsync>("addPortAsync"),
      InstanceMethod<&EngineWrap::RemovePort>("removePort"),
      InstanceMethod<&EngineWrap::AddFdb>("addFdb"),
      InstanceMethod<&EngineWrap::RemoveFdb>("removeFdb"),
      InstanceMethod<&EngineWrap::Fdb>("fdb"),
      InstanceMethod<&EngineWrap::CountersSnapshot>("counters"),
      InstanceMethod<&EngineWrap::AddPuntRule>("addPuntRule"),
      InstanceMethod<&EngineWrap::RemovePuntRule>("removePuntRule"),
      InstanceMethod<&EngineWrap::DrainPunts>("drainPunts"),
      InstanceMethod<&EngineWrap::InjectToPort>("injectToPort"),
      InstanceMethod<&EngineWrap::InjectToVni>("injectToVni"),
      InstanceMethod<&EngineWrap::SendDatagram>("sendDatagram"),
      InstanceMethod<&EngineWrap::TxSourcePorts>("txSourcePorts"),
      InstanceMethod<&EngineWrap::LinkAddPeer>("linkAddPeer"),
      InstanceMethod<&EngineWrap::LinkRemovePeer>("linkRemovePeer"),
      InstanceMethod<&EngineWrap::LinkInstall>("linkInstall"),
      InstanceMethod<&EngineWrap::LinkExpire>("linkExpire"),
      InstanceMethod<&EngineWrap::LinkKeepalive>("linkKeepalive"),
      InstanceMethod<&EngineWrap::LinkSend>("linkSend"),
      InstanceMethod<&EngineWrap::LinkPeers>("linkPeers"),
      InstanceMethod<&EngineWrap::LinkPort>("linkPort"),
      InstanceMethod<&EngineWrap::CaptureStart>("captureStart"),
      InstanceMethod<&EngineWrap::InjectFromPort>("injectFromPort"),
      InstanceMethod<&EngineWrap::CaptureDrain>("captureDrain"),
      InstanceMethod<&EngineWrap::CaptureStop>("captureStop"),
      InstanceMethod<&EngineWrap::SetUplink>("setUplink"),
      InstanceMethod<&EngineWrap::SetNat>("setNat"),
      InstanceMethod<&EngineWrap::SetGateway>("setGateway"),
      InstanceMethod<&EngineWrap::AddNeighbour>("addNeighbour"),
      InstanceMethod<&EngineWrap::RemoveNeighbour>("removeNeighbour"),
      InstanceMethod<&EngineWrap::AddRouted>("addRouted"),
      InstanceMethod<&EngineWrap::RemoveRouted>("removeRouted"),
      InstanceMethod<&EngineWrap::SetUplinkMemory>("setUplinkMemory"),
      InstanceMethod<&EngineWrap::MemorySend>("memorySend"),
      InstanceMethod<&EngineWrap::MemoryReceive>("memoryReceive"),
    });
  }

  // new Engine({ underlayAddress: u32, underlayPort, ageingMs }, onPunt?)
  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    EngineOptions opt;
    opt.underlay_ip = u32(o.Get("underlayAddress"));
    opt.underlay_port = uint16_t(opt_int(o, "underlayPort", 4789));
    opt.ageing_ms = uint32_t(opt_int(o, "ageingMs", 300000));
    opt.fdb_limit = uint32_t(opt_int(o, "fdbLimit", 16384));
    auto flag = [&](const char* k) { return !o.Get(k).IsBoolean() || o.Get(k).As<Napi::Boolean>().Value(); };
    opt.udp_gso = flag("udpGso");
    opt.udp_gro = flag("udpGro");
    opt.tap_offload = flag("tapOffload");
    opt.tap_gro = flag("tapGro");
    opt.link_port = uint16_t(opt_int(o, "linkPort", 0));
    engine_ = guard(env, [&] { return std::make_unique<Engine>(opt); });
    if (info.Length() > 1 && info[1].IsFunction()) {
      tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "appnet-punt", 0, 1);
      tsfn_.Unref(env);
      has_tsfn_ = true;
      engine_->punt().notify = [this] { tsfn_.NonBlockingCall(); };
    }
  }

  ~EngineWrap() override { shutdown(); }

 private:
  void shutdown() {
    if (engine_) engine_->stop();
    if (has_tsfn_) {
      engine_->punt().notify = nullptr;
      tsfn_.Release();
      has_tsfn_ = false;
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] { engine_->start(); });
    return info.Env().Undefined();
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    shutdown();
    return info.Env().Undefined();
  }
  Napi::Value AddVni(const Napi::CallbackInfo& info) {
    bool encrypted = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    guard(info.Env(), [&] { engine_->add_vni(u32(info[0]), i32(info[1]), encrypted); });
    return info.Env().Undefined();
  }
  Napi::Value RemoveVni(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] { engine_->remove_vni(u32(info[0])); });
    return info.Env().Undefined();
  }
  Napi::Value SetKnownVteps(const Napi::CallbackInfo& info) {
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<uint32_t> vteps;
    for (uint32_t i = 0; i < a.Length(); i++) vteps.push_back(u32(a.Get(i)));
    guard(info.Env(), [&] { engine_->set_known_vteps(std::move(vteps)); });
    return info.Env().Undefined();
  }
  Napi::Value SetFlood(const Napi::CallbackInfo& info) {
    Napi::Array a = info[1].As<Napi::Array>();
    std::vector<uint32_t> remotes;
    for (uint32_t i = 0; i < a.Length(); i++) remotes.push_back(u32(a.Get(i)));
    guard(info.Env(), [&] { engine_->set_flood(u32(info[0]), std::move(remotes)); });
    return info.Env().Undefined();
  }
  // addPort({ name, kind: 'tap'|'tun', vni, mac: Buffer(6), mtu, ipv4: u32, netns?, filter?, addresses?: [u32, prefix][] }) -> id
  Napi::Value AddPort(const Napi::CallbackInfo& info) {
    Engine::PortSpec s = port_spec_of(info[0].As<Napi::Object>());
    int id = guard(info.Env(), [&] { return engine_->add_port(s); });
    return Napi::Number::New(info.Env(), id);
  }
  // addPortAsync(spec as addPort) -> Promise<id>. The device is created and configured on a libuv pool
  // thread: under the kernel's RTNL lock (shared with every namespace and device on the machine) that
  // takes 1-80 ms, which the synchronous addPort spent on the event loop. Engine::add_port takes the
  // config lock itself for the registration, so it is safe off the JS thread.
  Napi::Value AddPortAsync(const Napi::CallbackInfo& info) {
    Engine::PortSpec s = port_spec_of(info[0].As<Napi::Object>());
    auto* worker = new AddPortWorker(info.Env(), info.This().As<Napi::Object>(), engine_.get(), std::move(s));
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }
  static Engine::PortSpec port_spec_of(const Napi::Object& o) {
    Engine::PortSpec s;
    s.name = o.Get("name").As<Napi::String>().Utf8Value();
    s.kind = o.Get("kind").As<Napi::String>().Utf8Value() == "tun" ? DeviceKind::kTun : DeviceKind::kTap;
    s.vni = u32(o.Get("vni"));
    mac_write(s.mac, mac_of(o.Get("mac")));
    s.mtu = i32(o.Get("mtu"));
    s.ipv4 = o.Get("ipv4").IsNumber() ? u32(o.Get("ipv4")) : 0;
    if (o.Get("netns").IsString()) s.netns = o.Get("netns").As<Napi::String>().Utf8Value();
    s.memory = o.Get("memory").IsBoolean() && o.Get("memory").As<Napi::Boolean>().Value();
    if (o.Get("filter").IsObject()) {
      s.filtered = true;
      s.filter = port_filter_of(o.Get("filter"));
    }
    if (o.Get("addresses").IsArray()) {
      Napi::Array a = o.Get("addresses").As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Array pair = a.Get(i).As<Napi::Array>();
        s.addresses.push_back({u32(pair.Get(0u)), i32(pair.Get(1u))});
      }
    }
    return s;
  }
  // In-memory devices (memory_device.h), the instance's or the outside's end: memorySend(port id | 'uplink', frame)
  // -> false when the device's queue is full; memoryReceive(port id | 'uplink') -> Buffer[] waiting.
  int memory_peer(const Napi::Value& target) {
    if (target.IsString()) return uplink_peer_fd_;
    return engine_->port_peer_fd(i32(target));
  }
  Napi::Value SetUplinkMemory(const Napi::CallbackInfo& info) {
    uplink_peer_fd_ = guard(info.Env(), [&] { return engine_->set_uplink_memory(i32(info[0])); });
    return info.Env().Undefined();
  }
  Napi::Value MemorySend(const Napi::CallbackInfo& info) {
    Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
    bool ok = guard(info.Env(), [&] {
      int fd = memory_peer(info[0]);
      if (fd < 0) throw std::invalid_argument("not an in-memory device");
      return memory_device_send(fd, b.Data(), b.Length());
    });
    return Napi::Boolean::New(info.Env(), ok);
  }
  Napi::Value MemoryReceive(const Napi::CallbackInfo& info) {
    auto frames = guard(info.Env(), [&] {
      int fd = memory_peer(info[0]);
      if (fd < 0) throw std::invalid_argument("not an in-memory device");
      return memory_device_receive(fd, 4096);
    });
    Napi::Array a = Napi::Array::New(info.Env(), frames.size());
    for (size_t i = 0; i < frames.size(); i++)
      a.Set(uint32_t(i), Napi::Buffer<uint8_t>::Copy(info.Env(), frames[i].data(), frames[i].size()));
    return a;
  }
  Napi::Value RemovePort(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] { engine_->remove_port(i32(info[0])); });
    return info.Env().Undefined();
  }
  // addFdb(vni, mac, port (-1 for remote), remote u32)
  Napi::Value AddFdb(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] {
      engine_->add_fdb(u32(info[0]), mac_of(info[1]), i32(info[2]), u32(info[3]));
    });
    return info.Env().Undefined();
  }
  Napi::Value RemoveFdb(const Napi::CallbackInfo& info) {
    bool ok = guard(info.Env(), [&] { return engine_->remove_fdb(u32(info[0]), mac_of(info[1])); });
    return Napi::Boolean::New(info.Env(), ok);
  }
  Napi::Value Fdb(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto rows = engine_->fdb(u32(info[0]));
    uint64_t now = Engine::now_ms();
    Napi::Array out = Napi::Array::New(env, rows.size());
    for (size_t i = 0; i < rows.size(); i++) {
      Napi::Object r = Napi::Object::New(env);
      r.Set("mac", mac_buffer(env, rows[i].mac));
      r.Set("port", rows[i].e.port);
      r.Set("remote", double(rows[i].e.remote));
      r.Set("ageMs", double(now - rows[i].e.seen_ms));
      r.Set("static", rows[i].e.is_static);
      out.Set(uint32_t(i), r);
    }
    return out;
  }
  Napi::Value CountersSnapshot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    auto lock = engine_->read_lock();
    out.Set("wire", counters_object(env, engine_->wire()));
    Napi::Object vnis = Napi::Object::New(env);
    for (auto& [id, v] : engine_->vnis()) vnis.Set(std::to_string(id), counters_object(env, v->c));
    out.Set("vnis", vnis);
    Napi::Array ports = Napi::Array::New(env);
    uint32_t n = 0;
    for (auto& p : engine_->ports()) {
      if (!p) continue;
      Napi::Object o = counters_object(env, p->c);
      o.Set("id", p->id);
      o.Set("name", p->name);
      o.Set("vni", double(p->vni));
      o.Set("gro_merged", double(p->gro_merged.load()));
      o.Set("gro_writes", double(p->gro_writes.load()));
      ports.Set(n++, o);
    }
    out.Set("ports", ports);
    Napi::Object punt = Napi::Object::New(env);
    punt.Set("punted", double(engine_->punt().punted()));
    punt.Set("dropped", double(engine_->punt().dropped()));
    out.Set("punt", punt);
    Napi::Object offload = Napi::Object::New(env);
    offload.Set("udp_gso_fallbacks", double(engine_->gso_fallbacks()));
    offload.Set("tap_gro_fallbacks", double(engine_->gro_fallbacks()));
    out.Set("offload", offload);
    if (engine_->links_enabled()) out.Set("links", link_counters(env, engine_->links().global()));
    if (engine_->has_uplink()) out.Set("uplink", counters_object(env, engine_->uplink_counters()));
    return out;
  }

  // setUplink(name | null, mtu)
  Napi::Value SetUplink(const Napi::CallbackInfo& info) {
    std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    guard(info.Env(), [&] { engine_->set_uplink(name, i32(info[1])); });
    return info.Env().Undefined();
  }
  // setNat(NatTable | null)
  Napi::Value SetNat(const Napi::CallbackInfo& info) {
    std::shared_ptr<nat::NatTable> t;
    if (!info[0].IsNull() && !info[0].IsUndefined()) t = nat_table_of(info[0]);
    engine_->set_nat(std::move(t));
    return info.Env().Undefined();
  }
  // setGateway(vni, { ip, net, mask: u32, mac: Buffer(6), nat: bool } | null)
  Napi::Value SetGateway(const Napi::CallbackInfo& info) {
    NatGateway g;
    if (info[1].IsObject()) {
      Napi::Object o = info[1].As<Napi::Object>();
      g.ip = u32(o.Get("ip"));
      g.net = u32(o.Get("net"));
      g.mask = u32(o.Get("mask"));
      g.nat = o.Get("nat").ToBoolean().Value();
      guard(info.Env(), [&] { mac_write(g.mac, mac_of(o.Get("mac"))); });
    }
    guard(info.Env(), [&] { engine_->set_gateway(u32(info[0]), g); });
    return info.Env().Undefined();
  }
  Napi::Value AddNeighbour(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] { engine_->add_neighbour(u32(info[0]), u32(info[1]), mac_of(info[2])); });
    return info.Env().Undefined();
  }
  Napi::Value RemoveNeighbour(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->remove_neighbour(u32(info[0]), u32(info[1])));
  }
  Napi::Value AddRouted(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] { engine_->add_routed(u32(info[0]), u32(info[1])); });
    return info.Env().Undefined();
  }
  Napi::Value RemoveRouted(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->remove_routed(u32(info[0])));
  }

  // captureStart({ points: u32 mask, vni?, port?, snaplen?, ring?, filter?: string }) -> id
  Napi::Value CaptureStart(const Napi::CallbackInfo& info) {
    Napi::Object o = info[0].As<Napi::Object>();
    CaptureSpec spec;
    spec.points = u32(o.Get("points"));
    spec.vni = opt_int(o, "vni", -1);
    spec.port = opt_int(o, "port", -1);
    spec.snaplen = uint32_t(opt_int(o, "snaplen", 65535));
    spec.ring = uint32_t(opt_int(o, "ring", 4096));
    if (o.Get("filter").IsString()) {
      std::string expr = o.Get("filter").As<Napi::String>().Utf8Value();
      if (!expr.empty()) spec.bpf = guard(info.Env(), [&] { return compile_filter(expr, spec.snaplen); });
    }
    uint32_t id = guard(info.Env(), [&] { return engine_->capture_add(std::move(spec)); });
    return Napi::Number::New(info.Env(), id);
  }
  // captureDrain(id) -> { records: Buffer (packed, capture.h PackedRecordHeader), count, captured, dropped, filtered }
  Napi::Value CaptureDrain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = engine_->capture(u32(info[0]));
    if (!s) throw Napi::RangeError::New(env, "capture " + std::to_string(u32(info[0])) + " does not exist");
    // The batch's bytes become the Buffer's memory: no second copy, freed when JS lets go of it.
    auto* batch = new CaptureBatch(s->drain());
    Napi::Object out = Napi::Object::New(env);
    if (batch->bytes.empty()) {
      delete batch;
      out.Set("records", Napi::Buffer<uint8_t>::New(env, 0));
      out.Set("count", 0);
    } else {
      out.Set("records", Napi::Buffer<uint8_t>::New(env, batch->bytes.data(), batch->bytes.size(),
                                                     [](Napi::Env, uint8_t*, CaptureBatch* b) { delete b; }, batch));
      out.Set("count", batch->count);
    }
    out.Set("captured", double(s->captured()));
    out.Set("dropped", double(s->dropped()));
    out.Set("filtered", double(s->filtered()));
    return out;
  }
  Napi::Value InjectFromPort(const Napi::CallbackInfo& info) {
    auto b = info[1].As<Napi::Buffer<uint8_t>>();
    guard(info.Env(), [&] { engine_->inject_from_port(i32(info[0]), b.Data(), b.Length()); });
    return info.Env().Undefined();
  }
  Napi::Value CaptureStop(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->capture_remove(u32(info[0])));
  }

  // Encrypted links. Peers are named by their registered underlay address (u32, host order).
  Napi::Value LinkAddPeer(const Napi::CallbackInfo& info) {
    guard(info.Env(), [&] { engine_->link_add_peer(u32(info[0]), u32(info[1]), uint16_t(u32(info[2]))); });
    return info.Env().Undefined();
  }
  Napi::Value LinkRemovePeer(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), guard(info.Env(), [&] { return engine_->link_remove_peer(u32(info[0])); }));
  }
  // linkInstall(vtep, { localIndex, remoteIndex, sendKey: Buffer(32), recvKey: Buffer(32), initiator })
  Napi::Value LinkInstall(const Napi::CallbackInfo& info) {
    Napi::Object o = info[1].As<Napi::Object>();
    auto send = o.Get("sendKey").As<Napi::Buffer<uint8_t>>();
    auto recv = o.Get("recvKey").As<Napi::Buffer<uint8_t>>();
    if (send.Length() != link::kKeyLen || recv.Length() != link::kKeyLen)
      throw Napi::RangeError::New(info.Env(), "session keys are 32 bytes");
    guard(info.Env(), [&] {
      engine_->link_install(u32(info[0]), u32(o.Get("localIndex")), u32(o.Get("remoteIndex")), send.Data(),
                            recv.Data(), o.Get("initiator").ToBoolean().Value());
    });
    return info.Env().Undefined();
  }
  Napi::Value LinkExpire(const Napi::CallbackInfo& info) {
    engine_->link_expire();
    return info.Env().Undefined();
  }
  Napi::Value LinkKeepalive(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), guard(info.Env(), [&] { return engine_->link_keepalive(u32(info[0])); }));
  }
  Napi::Value LinkSend(const Napi::CallbackInfo& info) {
    auto b = info[2].As<Napi::Buffer<uint8_t>>();
    guard(info.Env(), [&] { engine_->link_send(u32(info[0]), uint16_t(u32(info[1])), b.Data(), b.Length()); });
    return info.Env().Undefined();
  }
  Napi::Value LinkPort(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), engine_->link_port());
  }
  // linkPeers(withKeys?) -> [{ vtep, endpoint: {ip, port}, sessions: {current, previous, next}, lastTxAgoMs, ... }]
  // Keys are included only when asked (operators' key export for decrypting captures).
  Napi::Value LinkPeers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool keys = info.Length() > 0 && info[0].ToBoolean().Value();
    auto lock = engine_->read_lock();
    uint64_t now = Engine::now_ms();
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = 0;
    for (auto& [vtep, p] : engine_->links().peers()) {
      Napi::Object o = link_counters(env, p->c);
      o.Set("vtep", double(vtep));
      o.Set("endpointIp", double(p->endpoint_ip()));
      o.Set("endpointPort", p->endpoint_port());
      uint64_t tx = p->last_tx_ms.load(), rx = p->last_rx_ms.load();
      o.Set("lastTxAgoMs", tx ? double(now - tx) : -1.0);
      o.Set("lastRxAgoMs", rx ? double(now - rx) : -1.0);
      o.Set("wantSession", p->want_session.load());
      const char* names[3] = {"current", "previous", "next"};
      LinkSession* slots[3] = {p->current.load(), p->previous.load(), p->next.load()};
      for (int i = 0; i < 3; i++) {
        if (!slots[i]) { o.Set(names[i], env.Null()); continue; }
        LinkSession& s = *slots[i];
        Napi::Object so = Napi::Object::New(env);
        so.Set("localIndex", double(s.local_idx));
        so.Set("remoteIndex", double(s.remote_idx));
        so.Set("initiator", s.initiator);
        so.Set("ageMs", double(now - s.created_ms));
        so.Set("sendCounter", Napi::BigInt::New(env, s.send_ctr.load()));
        if (keys) {
          so.Set("sendKey", Napi::Buffer<uint8_t>::Copy(env, s.send_key, link::kKeyLen));
          so.Set("recvKey", Napi::Buffer<uint8_t>::Copy(env, s.recv_key, link::kKeyLen));
        }
        o.Set(names[i], so);
      }
      out.Set(n++, o);
    }
    return out;
  }
  // addPuntRule({ ethertype?, ipProto?, dstIp?, dstPort?, vni?, consume? }) -> id
  Napi::Value AddPuntRule(const Napi::CallbackInfo& info) {
    Napi::Object o = info[0].As<Napi::Object>();
    PuntRule r;
    r.ethertype = opt_int(o, "ethertype", -1);
    r.ip_proto = opt_int(o, "ipProto", -1);
    r.dst_ip = o.Get("dstIp").IsNumber() ? u32(o.Get("dstIp")) : 0;
    r.dst_port = opt_int(o, "dstPort", -1);
    r.vni = opt_int(o, "vni", -1);
    r.consume = !o.Get("consume").IsBoolean() || o.Get("consume").As<Napi::Boolean>().Value();
    uint32_t id = guard(info.Env(), [&] { return engine_->add_punt_rule(r); });
    return Napi::Number::New(info.Env(), id);
  }
  Napi::Value RemovePuntRule(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), engine_->remove_punt_rule(u32(info[0])));
  }
  Napi::Value DrainPunts(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto items = engine_->punt().drain();
    Napi::Array out = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("rule", items[i].rule);
      o.Set("port", items[i].port);
      o.Set("vni", double(items[i].vni));
      o.Set("remote", double(items[i].remote));
      o.Set("remotePort", items[i].remote_port);
      o.Set("frame", Napi::Buffer<uint8_t>::Copy(env, items[i].frame.data(), items[i].frame.size()));
      out.Set(uint32_t(i), o);
    }
    return out;
  }
  Napi::Value InjectToPort(const Napi::CallbackInfo& info) {
    auto b = info[1].As<Napi::Buffer<uint8_t>>();
    guard(info.Env(), [&] { engine_->inject_to_port(i32(info[0]), b.Data(), b.Length()); });
    return info.Env().Undefined();
  }
  Napi::Value InjectToVni(const Napi::CallbackInfo& info) {
    auto b = info[1].As<Napi::Buffer<uint8_t>>();
    guard(info.Env(), [&] { engine_->inject_to_vni(u32(info[0]), b.Data(), b.Length()); });
    return info.Env().Undefined();
  }
  Napi::Value SendDatagram(const Napi::CallbackInfo& info) {
    auto b = info[2].As<Napi::Buffer<uint8_t>>();
    guard(info.Env(), [&] {
      engine_->send_datagram(u32(info[0]), uint16_t(u32(info[1])), b.Data(), b.Length());
    });
    return info.Env().Undefined();
  }
  Napi::Value TxSourcePorts(const Napi::CallbackInfo& info) {
    auto ports = engine_->tx_source_ports();
    Napi::Array a = Napi::Array::New(info.Env(), ports.size());
    for (size_t i = 0; i < ports.size(); i++) a.Set(uint32_t(i), ports[i]);
    return a;
  }

  std::unique_ptr<Engine> engine_;
  Napi::ThreadSafeFunction tsfn_;
  bool has_tsfn_ = false;
  int uplink_peer_fd_ = -1;  // setUplinkMemory: the outside end (owned by the engine)
};

// vxlanEncap(vni, frame) -> Buffer
Napi::Value VxlanEncap(const Napi::CallbackInfo& info) {
  uint32_t vni = u32(info[0]);
  auto f = info[1].As<Napi::Buffer<uint8_t>>();
  if (vni > kMaxVni) throw Napi::RangeError::New(info.Env(), "VNI exceeds 24 bits");
  auto out = Napi::Buffer<uint8_t>::New(info.Env(), kVxlanHdr + f.Length());
  vxlan_write_header(out.Data(), vni);
  std::memcpy(out.Data() + kVxlanHdr, f.Data(), f.Length());
  return out;
}

// vxlanDecap(datagram) -> { vni, error: 0 | DecapError }
Napi::Value VxlanDecap(const Napi::CallbackInfo& info) {
  auto d = info[0].As<Napi::Buffer<uint8_t>>();
  uint32_t vni = 0;
  DecapError err = vxlan_decap(d.Data(), d.Length(), &vni);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("vni", double(vni));
  o.Set("error", int(err));
  return o;
}

Napi::Value FlowHash(const Napi::CallbackInfo& info) {
  auto f = info[0].As<Napi::Buffer<uint8_t>>();
  return Napi::Number::New(info.Env(), flow_hash(f.Data(), f.Length()));
}

// tcp4Segment(frame, mss) -> Buffer[] | null: the engine's TSO segmentation, for the
// differential test against dataplane/wire/tso.ts.
Napi::Value Tcp4Segment(const Napi::CallbackInfo& info) {
  auto f = info[0].As<Napi::Buffer<uint8_t>>();
  Tcp4Gso g;
  if (!tcp4_gso_parse(f.Data(), f.Length(), u32(info[1]), &g)) return info.Env().Null();
  Napi::Array out = Napi::Array::New(info.Env(), g.count);
  std::vector<uint8_t> seg(g.hlen + g.mss);
  for (size_t i = 0; i < g.count; i++) {
    size_t n = tcp4_gso_segment(g, i, seg.data());
    out.Set(uint32_t(i), Napi::Buffer<uint8_t>::Copy(info.Env(), seg.data(), n));
  }
  return out;
}

// groCoalesce(frames: Buffer[]) -> { writes: [{ frame, vnet, segments }], steps: string[] }: the
// frames as one RX batch to one TAP port through the engine's coalescer (gro.h), for the
// differential test against dataplane/wire/gro.ts. steps[i]: 'merged', or why frame i started a
// new super-frame ('first' when nothing was pending) or was passed by (a candidate rule).
Napi::Value GroCoalesce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array in = info[0].As<Napi::Array>();
  std::vector<uint8_t> buf(kGroFrameMax);
  GroFrame g(buf.data(), buf.size());
  Napi::Array writes = Napi::Array::New(env);
  Napi::Array steps = Napi::Array::New(env, in.Length());
  auto emit = [&](const uint8_t* f, size_t len, const VnetHdr& h, size_t segments) {
    Napi::Object w = Napi::Object::New(env);
    w.Set("frame", Napi::Buffer<uint8_t>::Copy(env, f, len));
    Napi::Object v = Napi::Object::New(env);
    v.Set("flags", h.flags);
    v.Set("gsoType", h.gso_type);
    v.Set("hdrLen", h.hdr_len);
    v.Set("gsoSize", h.gso_size);
    v.Set("csumStart", h.csum_start);
    v.Set("csumOffset", h.csum_offset);
    w.Set("vnet", v);
    w.Set("segments", double(segments));
    writes.Set(writes.Length(), w);
  };
  auto flush = [&] {
    VnetHdr h;
    size_t count = g.count();
    size_t n = g.finish(&h);
    emit(g.data(), n, h, count);
    g.clear();
  };
  for (uint32_t i = 0; i < in.Length(); i++) {
    auto f = in.Get(i).As<Napi::Buffer<uint8_t>>();
    GroStep st = gro_offer(g, f.Data(), f.Length(), flush);
    const char* step = st.kind == GroStep::kMerged ? "merged"
                       : st.why == GroReject::kNone ? "first"
                                                     : gro_reject_name(st.why);
    steps.Set(i, step);
    if (st.kind == GroStep::kPassed) emit(f.Data(), f.Length(), VnetHdr{}, 1);
  }
  if (!g.empty()) flush();
  Napi::Object out = Napi::Object::New(env);
  out.Set("writes", writes);
  out.Set("steps", steps);
  return out;
}

// portFilterCheck(filter, frame, direction: 0 send | 1 receive) -> verdict name: the engine's
// port filter (port_filter.h), for the differential test against dataplane/wire/port-filter.ts.
Napi::Value PortFilterCheck(const Napi::CallbackInfo& info) {
  PortFilter f = port_filter_of(info[0]);
  auto b = info[1].As<Napi::Buffer<uint8_t>>();
  FilterDir dir = u32(info[2]) ? FilterDir::kReceive : FilterDir::kSend;
  return Napi::String::New(info.Env(), filter_verdict_name(port_filter_check(f, b.Data(), b.Length(), dir)));
}

// finishChecksum(frame, csumStart, csumOffset) -> Buffer | null (a completed copy).
Napi::Value FinishChecksum(const Napi::CallbackInfo& info) {
  auto f = info[0].As<Napi::Buffer<uint8_t>>();
  auto out = Napi::Buffer<uint8_t>::Copy(info.Env(), f.Data(), f.Length());
  if (!finish_checksum(out.Data(), out.Length(), u32(info[1]), u32(info[2]))) return info.Env().Null();
  return out;
}

// codecLoop(vni, frame, iterations) -> nanoseconds: encapsulates into a scratch buffer and
// decapsulates it `iterations` times inside native code, for the micro benchmark to report the
// per-frame cost the engine pays (no N-API call per frame, unlike vxlanEncap/vxlanDecap).
Napi::Value CodecLoop(const Napi::CallbackInfo& info) {
  uint32_t vni = u32(info[0]);
  auto f = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t n = u32(info[2]);
  std::vector<uint8_t> out(kVxlanHdr + f.Length());
  uint64_t acc = 0;
  timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (uint32_t i = 0; i < n; i++) {
    vxlan_write_header(out.data(), vni);
    std::memcpy(out.data() + kVxlanHdr, f.Data(), f.Length());
    uint32_t got = 0;
    acc += uint32_t(vxlan_decap(out.data(), out.size(), &got)) + got + flow_hash(out.data() + kVxlanHdr, f.Length());
    out[kVxlanHdr] ^= uint8_t(acc);  // keep the loop from being folded away
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ns = double(b.tv_sec - a.tv_sec) * 1e9 + double(b.tv_nsec - a.tv_nsec);
  return Napi::Number::New(info.Env(), ns + double(acc & 0));
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Define(env));
  exports.Set("vxlanEncap", Napi::Function::New(env, VxlanEncap));
  exports.Set("vxlanDecap", Napi::Function::New(env, VxlanDecap));
  exports.Set("flowHash", Napi::Function::New(env, FlowHash));
  exports.Set("tcp4Segment", Napi::Function::New(env, Tcp4Segment));
  exports.Set("finishChecksum", Napi::Function::New(env, FinishChecksum));
  exports.Set("portFilterCheck", Napi::Function::New(env, PortFilterCheck));
  exports.Set("groCoalesce", Napi::Function::New(env, GroCoalesce));
  exports.Set("codecLoop", Napi::Function::New(env, CodecLoop));
  RegisterLink(env, exports);
  RegisterNat(env, exports);
  return exports;
}

}  // namespace
}  // namespace appnet

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  return appnet::InitModule(env, exports);
}
NODE_API_MODULE(appnet, Init)
