// The link peer table: peers, session slots, and the receive index.
#include "links.h"

#include <sodium.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace appnet {

void LinkTable::add_peer(uint32_t vtep, uint32_t ip, uint16_t port) {
  auto& p = peers_[vtep];
  if (!p) {
    p = std::make_unique<LinkPeer>();
    p->vtep = vtep;
  }
  p->endpoint.store(LinkPeer::pack(ip, port));
}

bool LinkTable::remove_peer(uint32_t vtep) {
  auto it = peers_.find(vtep);
  if (it == peers_.end()) return false;
  for (auto& s : it->second->owned) {
    index_.erase(s->local_idx);
    sodium_memzero(s->send_key, sizeof(s->send_key));
    sodium_memzero(s->recv_key, sizeof(s->recv_key));
  }
  peers_.erase(it);
  return true;
}

void LinkTable::install(uint32_t vtep, uint32_t local_idx, uint32_t remote_idx, const uint8_t* send_key,
                        const uint8_t* recv_key, bool initiator, uint64_t now) {
  LinkPeer* p = peer(vtep);
  if (!p) throw std::invalid_argument("link peer " + std::to_string(vtep) + " does not exist");
  if (index_.count(local_idx))
    throw std::invalid_argument("session index " + std::to_string(local_idx) + " is in use");
  auto s = std::make_unique<LinkSession>();
  s->local_idx = local_idx;
  s->remote_idx = remote_idx;
  std::memcpy(s->send_key, send_key, link::kKeyLen);
  std::memcpy(s->recv_key, recv_key, link::kKeyLen);
  s->initiator = initiator;
  s->created_ms = now;
  LinkSession* raw = s.get();
  p->owned.push_back(std::move(s));
  index_[local_idx] = Found{p, raw};
  if (initiator) {
    // The responder has proved it holds the keys (its response decrypted): use at once.
    p->previous.store(p->current.load());
    p->current.store(raw);
    p->want_session.store(false);
  } else {
    p->next.store(raw);
  }
  collect(*p);
}

void LinkTable::promote(LinkPeer& p, LinkSession* s) {
  LinkSession* expected = s;
  if (!p.next.compare_exchange_strong(expected, nullptr)) return;
  p.previous.store(p.current.load());
  p.current.store(s, std::memory_order_release);
  p.want_session.store(false);
}

void LinkTable::expire(uint64_t now) {
  for (auto& [vtep, p] : peers_) {
    for (auto* slot : {&p->current, &p->previous, &p->next}) {
      LinkSession* s = slot->load();
      if (s && s->expired(now)) slot->store(nullptr);
    }
    collect(*p);
  }
}

void LinkTable::collect(LinkPeer& p) {
  LinkSession* live[3] = {p.current.load(), p.previous.load(), p.next.load()};
  for (auto it = p.owned.begin(); it != p.owned.end();) {
    LinkSession* s = it->get();
    if (s == live[0] || s == live[1] || s == live[2]) { ++it; continue; }
    index_.erase(s->local_idx);
    sodium_memzero(s->send_key, sizeof(s->send_key));
    sodium_memzero(s->recv_key, sizeof(s->recv_key));
    it = p.owned.erase(it);
  }
}

}  // namespace appnet
