// The edge between the handshake core and the engine: handshake messages punted from the link
// port go to the Handshaker, its replies go out of the link socket, completed sessions are
// installed in the engine, and once a second the per-peer timers look at the engine's view of
// each link (session age, last sent/received) and initiate, rekey, keep alive or expire.
// Nothing here runs per data packet: the engine seals and opens on its own threads.
import { LINK_PUNT_RULE, type Engine, type LinkPeerInfo, type PuntedFrame } from '../engine.ts';
import { Handshaker, type HandshakeCounters } from './handshaker.ts';
import { PeerTimers, type PeerTimersOptions } from './peer-timers.ts';
import type { KeyPair } from './noise-ik.ts';

export interface LinkPeerConfig {
  /** The peer's identity: its registered underlay address. */
  vtep: string;
  publicKey: Uint8Array;
  /** Where to send; default vtep:linkPort. Moves when the peer roams. */
  endpoint?: { address: string; port: number };
  /** Keep a session up with this peer (it shares an encrypted network); else only answer it. */
  active: boolean;
}

export interface LinkManagerOptions {
  engine: Engine;
  staticKey: KeyPair;
  /** The link UDP port peers listen on. */
  port: number;
  timers?: PeerTimersOptions;
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  now?: () => number;
  tickMs?: number;
}

interface PeerState {
  cfg: LinkPeerConfig;
  key: string;
  timers: PeerTimers;
  indexes: Set<number>;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export class LinkManager {
  readonly #engine: Engine;
  readonly #hs: Handshaker;
  readonly #port: number;
  readonly #timerOpts: PeerTimersOptions;
  readonly #log: LinkManagerOptions['log'];
  readonly #now: () => number;
  readonly #peers = new Map<string, PeerState>();  // by vtep
  readonly #byKey: Map<string, string>;  // public key hex -> vtep: who is authorised
  #timer: NodeJS.Timeout | undefined;

  private constructor(o: LinkManagerOptions, hs: Handshaker, byKey: Map<string, string>) {
    this.#byKey = byKey;
    this.#engine = o.engine;
    this.#hs = hs;
    this.#port = o.port;
    this.#timerOpts = o.timers ?? {};
    this.#log = o.log;
    this.#now = o.now ?? Date.now;
  }

  static async create(o: LinkManagerOptions): Promise<LinkManager> {
    const byKey = new Map<string, string>();
    const hs = await Handshaker.create({
      staticKey: o.staticKey,
      authorise: (pub: Uint8Array) => byKey.get(hex(pub)) ?? null,
      now: o.now ?? Date.now,
    });
    const m = new LinkManager(o, hs, byKey);
    m.#timer = setInterval(() => m.tick(), o.tickMs ?? 1000);
    m.#timer.unref();
    return m;
  }

  /** Replaces the set of authorised peers (every registered host but this one). */
  setPeers(peers: LinkPeerConfig[]): void {
    const want = new Map(peers.map((p) => [p.vtep, p]));
    for (const [vtep, st] of this.#peers) {
      const next = want.get(vtep);
      if (next && hex(next.publicKey) === st.key) continue;
      // Gone, or its key changed: its sessions were made with the old key.
      this.#engine.linkRemovePeer(vtep);
      for (const i of st.indexes) this.#hs.forget(i);
      this.#byKey.delete(st.key);
      this.#peers.delete(vtep);
    }
    for (const p of peers) {
      const st = this.#peers.get(p.vtep);
      if (st) {
        st.cfg = p;
        continue;
      }
      const key = hex(p.publicKey);
      this.#engine.linkAddPeer(p.vtep, p.endpoint ?? { address: p.vtep, port: this.#port });
      this.#peers.set(p.vtep, { cfg: p, key, timers: new PeerTimers(this.#timerOpts), indexes: new Set() });
      this.#byKey.set(key, p.vtep);
    }
    this.tick();
  }

  /** Feed every punted batch here; frames of other rules are ignored. */
  onPunts(frames: PuntedFrame[]): void {
    for (const f of frames) if (f.rule === LINK_PUNT_RULE && f.remote) this.#receive(f.frame, f.remote, f.remotePort);
  }

  #receive(msg: Uint8Array, address: string, port: number): void {
    const r = this.#hs.receive(msg, { address, port });
    const now = this.#now();
    switch (r.kind) {
      case 'reply':
        // The session first: the initiator may send on it as soon as the reply reaches it.
        this.#install(r.session, now);
        this.#engine.linkSend(address, port, r.message);
        break;
      case 'session':
        this.#install(r.session, now);
        break;
      case 'cookie':
        this.#engine.linkSend(address, port, r.message);
        break;
      default:
        break;
    }
  }

  #install(s: { peer: string; localIndex: number; remoteIndex: number; sendKey: Uint8Array; recvKey: Uint8Array; initiator: boolean }, now: number): void {
    const st = this.#peers.get(s.peer);
    if (!st) return;
    this.#engine.linkInstall(s.peer, s);
    this.#sessionsMade.set(s.peer, (this.#sessionsMade.get(s.peer) ?? 0) + 1);
    st.indexes.add(s.localIndex);
    st.timers.onSession(now, s.initiator);
    // The initiator speaks first so that the responder can confirm (and start using) the session.
    if (s.initiator) this.#engine.linkKeepalive(s.peer);
    this.#log?.info({ peer: s.peer, localIndex: s.localIndex, initiator: s.initiator }, 'link session installed');
  }

  /** Runs the timers of every peer against the engine's view of its link. */
  tick(): void {
    const now = this.#now();
    this.#engine.linkExpire();
    const view = new Map(this.#engine.linkPeers().map((p) => [p.vtep, p]));
    for (const [vtep, st] of this.#peers) {
      const p = view.get(vtep);
      if (!p) continue;
      this.#forgetGone(st, p);
      if (!st.cfg.active && !p.current) continue;
      const cur = p.current;
      const actions = st.timers.tick(now, {
        hasSession: cur !== null,
        sessionCreatedMs: cur ? now - cur.ageMs : undefined,
        sessionInitiator: cur?.initiator,
        lastTxMs: p.lastTxAgoMs === null ? 0 : now - p.lastTxAgoMs,
        lastRxMs: p.lastRxAgoMs === null ? 0 : now - p.lastRxAgoMs,
        sendCounter: cur?.sendCounter ?? 0n,
      });
      for (const a of actions) {
        if (a.type === 'initiate') {
          if (!st.cfg.active) continue;  // a passive peer's rekey is the active side's job
          const msg = this.#hs.initiate(vtep, st.cfg.publicKey);
          this.#engine.linkSend(p.endpoint.address, p.endpoint.port, msg);
          st.timers.onInitiated(now);
        } else if (a.type === 'keepalive') {
          this.#engine.linkKeepalive(vtep);
        } else if (a.type === 'expire') {
          this.#engine.linkExpire();
        }
      }
    }
  }

  // Session indexes the engine no longer holds go back to the handshaker's free pool.
  #forgetGone(st: PeerState, p: LinkPeerInfo): void {
    const live = new Set([p.current, p.previous, p.next].filter((s) => s !== null).map((s) => s!.localIndex));
    for (const i of st.indexes) {
      if (!live.has(i)) {
        st.indexes.delete(i);
        this.#hs.forget(i);
      }
    }
  }

  /** Handshake counters; unanswered initiations (counted by the timers) as failed.timeout. */
  counters(): HandshakeCounters {
    const c = this.#hs.counters();
    let timeouts = 0;
    for (const st of this.#peers.values()) timeouts += st.timers.timeouts;
    return { ...c, failed: { ...c.failed, timeout: (c.failed.timeout ?? 0) + timeouts } };
  }

  peers(): LinkPeerInfo[] {
    return this.#engine.linkPeers();
  }

  /** Sessions installed per peer (underlay address) since start: the first handshake and every rekey. */
  sessionsMade(): ReadonlyMap<string, number> {
    return this.#sessionsMade;
  }
  readonly #sessionsMade = new Map<string, number>();

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
