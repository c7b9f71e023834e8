// Engines without devices or root (docs/testing.md "The engine in memory"): every engine in this process, its
// underlay on its own loopback address (127.0.0.1, .2, ...) at one shared port, its ports in-memory devices the
// test sends frames into and reads frames out of. The real TX and RX threads run; only the kernel devices and the
// namespaces are gone. Frames here are built by hand with the wire codecs.
import type { ExecutionContext } from 'ava';
import { createSocket } from 'node:dgram';
import { Engine, type EngineOptions } from '../../dataplane/engine.ts';
import { emitEthernet, emitIpv4, emitUdp, emitArp, parseEthernet } from '../../dataplane/wire/index.ts';
import { parseIpv4Address, parseMac } from '../../dataplane/wire/address.ts';
import { until } from './until.ts';

/** A free UDP port on loopback, shared by every engine of a test (each binds its own 127.0.0.x). */
export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Engines at 127.0.0.1, 127.0.0.2, ...; each started and stopped when the test ends (also on failure). */
export async function memoryEngines(t: ExecutionContext, n: number, opts: Partial<EngineOptions> = {}): Promise<{ engines: Engine[]; underlayPort: number }> {
  const underlayPort = await freeUdpPort();
  const engines: Engine[] = [];
  t.teardown(() => { for (const e of engines) e.stop(); });
  for (let i = 0; i < n; i++) {
    const e = new Engine({ underlayAddress: vtep(i), underlayPort, offloads: { tapOffload: false }, ...opts });
    engines.push(e);
    e.start();
  }
  return { engines, underlayPort };
}

export const vtep = (i: number): string => `127.0.0.${i + 1}`;

export function ethernet(dst: string, src: string, ethertype: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(14 + payload.length);
  emitEthernet({ dst: parseMac(dst), src: parseMac(src), ethertype, payload }, b);
  return b;
}

/** An Ethernet frame carrying IPv4/UDP from src to dst with `payload`. */
export function udpFrame(f: { dstMac: string; srcMac: string; src: string; dst: string; sport?: number; dport?: number; payload: Uint8Array }): Buffer {
  const src = parseIpv4Address(f.src);
  const dst = parseIpv4Address(f.dst);
  const udp = Buffer.alloc(8 + f.payload.length);
  emitUdp({ srcPort: f.sport ?? 40000, dstPort: f.dport ?? 9, payload: f.payload }, udp, 0, { src, dst });
  const ip = Buffer.alloc(20 + udp.length);
  emitIpv4({ dscp: 0, ecn: 0, id: 1, dontFragment: true, moreFragments: false, fragmentOffset: 0, ttl: 64, protocol: 17, src, dst, options: new Uint8Array(0), payload: udp }, ip);
  return ethernet(f.dstMac, f.srcMac, 0x0800, ip);
}

export function arpRequest(srcMac: string, srcIp: string, targetIp: string): Buffer {
  const arp = Buffer.alloc(28);
  emitArp({ operation: 'request', senderMac: parseMac(srcMac), senderIp: parseIpv4Address(srcIp), targetMac: new Uint8Array(6), targetIp: parseIpv4Address(targetIp) }, arp);
  return ethernet('ff:ff:ff:ff:ff:ff', srcMac, 0x0806, arp);
}

/** Waits until memory port `port` of `e` has received at least `n` frames; returns them all. */
export async function received(e: Engine, port: number | 'uplink', n: number, what: string): Promise<Buffer[]> {
  const got: Buffer[] = [];
  await until(what, async () => {
    got.push(...e.memoryReceive(port));
    return got.length >= n ? true : undefined;
  }, 40);
  return got;
}

/** Frames still arriving at `port` within a short settle (for "nothing else came"). */
export async function drain(e: Engine, port: number | 'uplink'): Promise<Buffer[]> {
  await new Promise((r) => setTimeout(r, 200));
  return e.memoryReceive(port);
}

export const srcMacOf = (frame: Uint8Array): Uint8Array => parseEthernet(frame).src;
