// N-API hooks for the differential tests and the codec micro benchmark: the engine's own wire functions (VXLAN,
// flow hash, TSO, GRO, the port filter, checksum completion), called on one buffer at a time.
#include <napi.h>
#include <time.h>

#include <cstring>
#include <vector>

#include "addon_util.h"
#include "gro.h"
#include "offload.h"
#include "port_filter.h"
#include "wire.h"

namespace appnet {
namespace {

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

}  // namespace

void RegisterCodecs(Napi::Env env, Napi::Object exports) {
  exports.Set("vxlanEncap", Napi::Function::New(env, VxlanEncap));
  exports.Set("vxlanDecap", Napi::Function::New(env, VxlanDecap));
  exports.Set("flowHash", Napi::Function::New(env, FlowHash));
  exports.Set("tcp4Segment", Napi::Function::New(env, Tcp4Segment));
  exports.Set("finishChecksum", Napi::Function::New(env, FinishChecksum));
  exports.Set("portFilterCheck", Napi::Function::New(env, PortFilterCheck));
  exports.Set("groCoalesce", Napi::Function::New(env, GroCoalesce));
  exports.Set("codecLoop", Napi::Function::New(env, CodecLoop));
}

}  // namespace appnet
