// GRO into TAP ports, end to end: two hosts, an instance on each, a 20 MB TCP transfer from a (h1) to
// b (h2). On h2 the RX pipeline writes the arriving segments into b's TAP as coalesced super-frames
// (native/src/gro.h): the data arrives intact, the port counters show coalesced writes, and b's kernel
// counts one received packet per write, not per segment. With offloads.tapGro off nothing is coalesced.
// Runs over the encrypted link pipeline and the clear VXLAN one. UDP datagrams sent in bursts are coalesced
// too (GSO UDP_L4): b's kernel cuts each super-frame back into the datagrams, every byte and boundary intact.
import test, { type ExecutionContext } from 'ava';
import { fileURLToPath } from 'node:url';
import type { PortCounters } from '../dataplane/engine.ts';
import { buildLinkNet, type LinkNet } from './helpers/link-net.ts';
import { runIn, spawnIn, stopProcess } from './helpers/run.ts';

const UDP_BURSTS = fileURLToPath(new URL('./helpers/udp-bursts.mjs', import.meta.url));

const BYTES = 20 * 1024 * 1024;

/** The instance's own interface (the TAP, moved into its namespace): its kernel's receive counters. */
async function instanceIface(ns: string): Promise<{ name: string; rxPackets: number }> {
  const { stdout } = await runIn(ns, 'ip', ['-j', '-s', 'link', 'show']);
  const l = (JSON.parse(stdout) as Array<{ ifname: string; stats64: { rx: { packets: number } } }>).find((x) => x.ifname !== 'lo');
  if (!l) throw new Error(`no interface but lo in ${ns}: ${stdout}`);
  return { name: l.ifname, rxPackets: l.stats64.rx.packets };
}

async function portOf(x: LinkNet, name: string): Promise<PortCounters & { offload: { tap_gro_fallbacks: number } }> {
  const c = await x.d2.get('/engine/counters');
  const p = (c.ports as PortCounters[]).find((q) => q.name === name);
  if (!p) throw new Error(`no port ${name} on h2: ${JSON.stringify(c.ports.map((q: PortCounters) => q.name))}`);
  return { ...p, offload: c.offload };
}

async function transfer(t: ExecutionContext, x: LinkNet): Promise<{ port: PortCounters & { offload: { tap_gro_fallbacks: number } }; rxPackets: number }> {
  const r = await x.net.tcpTransfer(x.a.ns, x.b.ns, x.addrB, BYTES);
  t.is(r.receivedBytes, BYTES);
  t.is(r.receivedSha256, r.sentSha256);
  const iface = await instanceIface(x.b.ns);
  const port = await portOf(x, iface.name);
  const after = await instanceIface(x.b.ns);
  t.log(`port ${port.name}: ${port.tx_packets} frames in ${port.tx_packets - port.gro_merged + port.gro_writes} writes ` +
    `(${port.gro_merged} coalesced into ${port.gro_writes} super-frames); instance received ${after.rxPackets}`);
  t.is(port.drops.queue_full, 0);
  t.is(port.offload.tap_gro_fallbacks, 0);
  return { port, rxPackets: Math.max(iface.rxPackets, after.rxPackets) };
}

/** b's kernel received one packet per write: frames - coalesced + super-frames (ARP/ICMP aside). */
function assertWrites(t: ExecutionContext, port: PortCounters, rxPackets: number): void {
  const writes = port.tx_packets - port.gro_merged + port.gro_writes;
  t.true(Math.abs(rxPackets - writes) <= 10, `instance received ${rxPackets} packets, the port made ${writes} writes`);
}

for (const encrypt of [true, false]) {
  test.serial(`${encrypt ? 'encrypted link' : 'clear VXLAN'}: 20 MB arrive intact through coalesced writes into the TAP`, async (t) => {
    const x = await buildLinkNet(t, { encrypt });
    const { port, rxPackets } = await transfer(t, x);
    t.true(port.gro_writes > 0, 'no super-frame was written');
    t.true(port.gro_merged >= 2 * port.gro_writes, 'a super-frame holds at least two frames');
    // 20 MB is ~14,800 segments of 1418-byte frames: most of them must have gone out coalesced.
    t.true(port.gro_merged > port.tx_packets / 2, `only ${port.gro_merged} of ${port.tx_packets} frames coalesced`);
    assertWrites(t, port, rxPackets);
  });
}

test.serial('offloads.tapGro false: every frame is its own write, and the transfer still arrives intact', async (t) => {
  const x = await buildLinkNet(t, { daemon: { offloads: { udpGso: true, udpGro: true, tapOffload: true, tapGro: false } } });
  const { port, rxPackets } = await transfer(t, x);
  t.is(port.gro_merged, 0);
  t.is(port.gro_writes, 0);
  t.true(port.tx_packets > BYTES / 1418, `${port.tx_packets} frames for ${BYTES} bytes`);
  assertWrites(t, port, rxPackets);
});

/** `count` datagrams from a to b in bursts of `burst` (helpers/udp-bursts.mjs); what b's receiver saw. */
async function udpBursts(x: LinkNet, count: number, burst: number): Promise<{ received: number; bad: number; duplicates: number; sizes: number }> {
  const args = [UDP_BURSTS, 'receive', x.addrB, '5300', String(count), String(burst)];
  const rx = x.net.track(spawnIn(x.b.ns, process.execPath, args));
  let out = '';
  rx.stdout!.on('data', (b: Buffer) => (out += b));
  rx.stderr!.on('data', (b: Buffer) => (out += b));
  const closed = new Promise((r) => rx.once('close', r));
  try {
    for (let waited = 0; !/listening/.test(out); waited += 20) {
      if (rx.exitCode !== null || waited > 10_000) throw new Error(`udp receiver in ${x.b.ns} did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await runIn(x.a.ns, process.execPath, [UDP_BURSTS, 'send', x.addrB, '5300', String(count), String(burst)], { timeoutMs: 60_000 });
    await closed;
    const line = out.split('\n').find((l) => l.startsWith('{'));
    if (!line) throw new Error(`udp receiver printed no result: ${out}`);
    return JSON.parse(line);
  } finally {
    await stopProcess(rx, { graceMs: 1000 });
  }
}

const UDP_ON = { udpGso: true, udpGro: true, tapOffload: true, tapGro: true, tapGroUdp: true };

for (const encrypt of [false, true]) {
  test.serial(`offloads.tapGroUdp, ${encrypt ? 'encrypted link' : 'clear VXLAN'}: UDP bursts are coalesced into UDP_L4 super-frames and arrive datagram by datagram, intact`, async (t) => {
    const x = await buildLinkNet(t, { encrypt, daemon: { offloads: UDP_ON } });
    const before = await instanceIface(x.b.ns);
    const r = await udpBursts(x, 6000, 32);
    t.log(`received ${r.received} of 6000 datagrams in ${r.sizes} sizes; ${r.bad} bad, ${r.duplicates} duplicates`);
    t.is(r.bad, 0, 'every datagram that arrived has its own length and bytes');
    t.is(r.duplicates, 0);
    // A datagram may be lost (a full socket buffer on a loaded machine), but a super-frame cut at the wrong place
    // would be seen as bad, and one refused would show as a fallback below.
    t.true(r.received >= 6000 * 0.9, `only ${r.received} of 6000 arrived`);
    t.true(r.sizes > 100, 'the bursts had their own sizes');
    const iface = await instanceIface(x.b.ns);
    const port = await portOf(x, iface.name);
    t.log(`port ${port.name}: ${port.tx_packets} frames; ${port.gro_merged} coalesced into ${port.gro_writes} super-frames`);
    t.is(port.offload.tap_gro_fallbacks, 0);
    t.true(port.gro_writes > 20, `only ${port.gro_writes} super-frames`);
    t.true(port.gro_merged > 6000 / 4, `only ${port.gro_merged} of 6000 datagrams coalesced`);
    // b's kernel counts one received packet per write: fewer than the datagrams that arrived.
    t.true(iface.rxPackets - before.rxPackets < r.received, `b's interface counted ${iface.rxPackets - before.rxPackets} packets for ${r.received} datagrams`);
  });
}

test.serial('by default UDP is not coalesced: every datagram is its own write', async (t) => {
  const x = await buildLinkNet(t, { encrypt: false });
  const r = await udpBursts(x, 3000, 32);
  t.is(r.bad, 0);
  t.true(r.received >= 3000 * 0.9, `only ${r.received} of 3000 arrived`);
  const port = await portOf(x, (await instanceIface(x.b.ns)).name);
  t.is(port.gro_writes, 0, 'no super-frame for UDP-only traffic');
  t.is(port.gro_merged, 0);
});
