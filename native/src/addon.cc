// N-API bindings: the Engine class (the codec hooks of the differential tests are in addon_codecs.cc, links in
// addon_link.cc, the NAT table in addon_nat.cc).
// Arguments are validated in dataplane/engine.ts; here we only convert and translate errors.
#include <arpa/inet.h>
#include <napi.h>

#include <time.h>

#include <cstring>
#include <memory>
#include <vector>

#include "engine.h"
#include "memory_device.h"
#include "port_filter.h"
#include "wire.h"
#include "addon_util.h"

namespace appnet {
void RegisterLink(Napi::Env env, Napi::Object exports);  // addon_link.cc
void RegisterNat(Napi::Env env, Napi::Object exports);   // addon_nat.cc
void RegisterCodecs(Napi::Env env, Napi::Object exports);  // addon_codecs.cc
Napi::Object counters_snapshot(Napi::Env env, Engine& e);  // addon_snapshots.cc
Napi::Array link_peers_snapshot(Napi::Env env, Engine& e, bool with_keys);  // addon_snapshots.cc
std::shared_ptr<nat::NatTable> nat_table_of(const Napi::Value& v);  // addon_nat.cc
namespace {

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
    EngineOptions opt = engine_options_of(o);
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
  Napi::Value CountersSnapshot(const Napi::CallbackInfo& info) { return counters_snapshot(info.Env(), *engine_); }

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
    return link_peers_snapshot(info.Env(), *engine_, info.Length() > 0 && info[0].ToBoolean().Value());
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

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Define(env));
  RegisterCodecs(env, exports);
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
