// N-API snapshots of the engine's state for JS: every counter (engine.counters()) and the link peers with their
// session slots (engine.linkPeers()). Read under the engine's shared configuration lock.
#include <napi.h>

#include <string>

#include "engine.h"

namespace appnet {
namespace {

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

}  // namespace

Napi::Object counters_snapshot(Napi::Env env, Engine& e) {
  Napi::Object out = Napi::Object::New(env);
  auto lock = e.read_lock();
  out.Set("wire", counters_object(env, e.wire()));
  Napi::Object vnis = Napi::Object::New(env);
  for (auto& [id, v] : e.vnis()) vnis.Set(std::to_string(id), counters_object(env, v->counters));
  out.Set("vnis", vnis);
  Napi::Array ports = Napi::Array::New(env);
  uint32_t n = 0;
  for (auto& p : e.ports()) {
    if (!p) continue;
    Napi::Object o = counters_object(env, p->counters);
    o.Set("id", p->id);
    o.Set("name", p->name);
    o.Set("vni", double(p->vni));
    o.Set("gro_merged", double(p->gro_merged.load()));
    o.Set("gro_writes", double(p->gro_writes.load()));
    ports.Set(n++, o);
  }
  out.Set("ports", ports);
  Napi::Object punt = Napi::Object::New(env);
  punt.Set("punted", double(e.punt().punted()));
  punt.Set("dropped", double(e.punt().dropped()));
  out.Set("punt", punt);
  Napi::Object offload = Napi::Object::New(env);
  offload.Set("udp_gso_fallbacks", double(e.gso_fallbacks()));
  offload.Set("tap_gro_fallbacks", double(e.gro_fallbacks()));
  offload.Set("uplink_gso_writes", double(e.uplink_gso_writes()));
  offload.Set("uplink_gso_reads", double(e.uplink_gso_reads()));
  offload.Set("uplink_gso_fallbacks", double(e.uplink_gso_fallbacks()));
  out.Set("offload", offload);
  Napi::Array pipelines = Napi::Array::New(env);
  for (int i = 0; i < e.threads(); i++) {
    const PipelineCounters& c = e.pipeline_counters(i);
    Napi::Object o = Napi::Object::New(env);
    o.Set("tx_reads", double(c.tx_reads.load()));
    o.Set("rx_datagrams", double(c.rx_datagrams.load()));
    o.Set("link_datagrams", double(c.link_datagrams.load()));
    pipelines.Set(uint32_t(i), o);
  }
  out.Set("pipelines", pipelines);
  if (e.links_enabled()) out.Set("links", link_counters(env, e.links().global()));
  if (e.has_uplink()) out.Set("uplink", counters_object(env, e.uplink_counters()));
  return out;
}

Napi::Array link_peers_snapshot(Napi::Env env, Engine& e, bool keys) {
  auto lock = e.read_lock();
  uint64_t now = Engine::now_ms();
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (auto& [vtep, p] : e.links().peers()) {
    Napi::Object o = link_counters(env, p->counters);
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

}  // namespace appnet
