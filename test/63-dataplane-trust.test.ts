// The data plane trusts only whom it should (issue 13, docs/security.md): clear VXLAN only from known VTEPs
// (registered hosts; in static mode the flood lists and link peers), an authenticated link peer only into
// VNIs both hosts carry, and no frame from the wire may take over a live local instance's MAC. Each refusal
// is a counted drop, and the same datagram from a host that may send it is delivered (so the check is the
// sender, not the bytes).
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestNet, type Daemon } from './helpers/testnet.ts';
import { runIn } from './helpers/run.ts';
import { cliJson, controlPlaneConfig } from './helpers/api-in-ns.ts';
import { natInstance } from './helpers/nat-net.ts';
import { until } from './helpers/until.ts';
import { deviceName } from '../control/instances/interface.ts';
import { buildOverlay } from './helpers/overlay.ts';

const SEND_UDP = fileURLToPath(new URL('./helpers/send-udp.mjs', import.meta.url));

const mac = (text: string) => Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
/** A VXLAN datagram (I flag, `vni`) carrying an Ethernet frame dst <- src of the local experimental EtherType. */
function vxlan(vni: number, dst: string, src: string): string {
  const hdr = Buffer.from([0x08, 0, 0, 0, (vni >> 16) & 255, (vni >> 8) & 255, vni & 255, 0]);
  const frame = Buffer.concat([mac(dst), mac(src), Buffer.from([0x88, 0xb5]), Buffer.alloc(46, 0x55)]);
  return Buffer.concat([hdr, frame]).toString('hex');
}

async function portTx(d: Daemon, name: string): Promise<number> {
  const c = await d.get('/engine/counters');
  return c.ports.find((p: any) => p.name === name)?.tx_packets ?? 0;
}

test('registered hosts: clear VXLAN from an unregistered address is dropped as unknown_vtep; a frame claiming a live local MAC as mac_conflict', async (t) => {
  const net = await TestNet.create(t, { hosts: 3 });
  const [h1, h2, h3] = net.hosts; // h3 runs no daemon: an address on the underlay that is not a registered host
  const cp = await controlPlaneConfig(net);
  const d1 = await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const network = await cliJson(h1.ns, 'network', 'create', 'trust', '198.18.63.0/24', '--no-dhcp', '--no-nat');
  const a = await natInstance(net, h1, 'ta', network);
  const b = await natInstance(net, h2, 'tb', network);
  const p = await net.ping(a.ns, b.ipv4, { count: 3, interval: 0.1 });
  t.is(p.received, 3, p.output);
  await until('h1 knows h2 as a VTEP', async () => ((await d1.get('/engine/counters')).wire.rx_packets > 0 ? true : undefined));
  const port = deviceName(a.iface);
  const vni = network.vxlan_id as number;
  const toA = vxlan(vni, a.iface.macaddr, '02:00:00:63:00:01');
  const before = (await d1.get('/engine/counters')).wire.drops.unknown_vtep ?? 0;
  const txBefore = await portTx(d1, port);

  // From h3: counted, and a's port delivers nothing.
  await runIn(h3.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '10', toA]);
  const after = await until('h1 counts the unknown VTEP', async () => {
    const c = await d1.get('/engine/counters');
    return (c.wire.drops.unknown_vtep ?? 0) - before >= 10 ? c : undefined;
  });
  t.is((after.wire.drops.unknown_vtep ?? 0) - before, 10);
  t.is(await portTx(d1, port), txBefore, 'nothing from the unknown VTEP reached the instance');

  // The same frames from h2, a registered host, are delivered.
  await runIn(h2.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '10', toA]);
  t.true(await until('the frames from h2 are delivered', async () => ((await portTx(d1, port)) - txBefore >= 10 ? true : undefined)));

  // From h2, a frame whose source is a's MAC (a spoke just now): dropped, and a's entry stays local.
  const spoof = vxlan(vni, 'ff:ff:ff:ff:ff:ff', a.iface.macaddr);
  await net.ping(a.ns, b.ipv4, { count: 1 });
  await runIn(h2.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '5', spoof]);
  const c = await until('h1 counts the MAC conflict', async () => {
    const x = await d1.get('/engine/counters');
    return (x.vnis[String(vni)]?.drops.mac_conflict ?? 0) >= 5 ? x : undefined;
  }, 20).catch(async (e: Error) => {
    throw new Error(`${e.message}: counters ${JSON.stringify((await d1.get('/engine/counters')).vnis)} fdb ${JSON.stringify(await d1.get(`/engine/fdb/${vni}`))} a ${a.iface.macaddr}`);
  });
  t.is(c.vnis[String(vni)].drops.mac_conflict, 5);
  const fdb = await d1.get(`/engine/fdb/${vni}`);
  const entry = fdb.find((e: any) => e.mac === a.iface.macaddr);
  t.truthy(entry?.port !== null && entry?.remote === null, JSON.stringify(entry));
  const again = await net.ping(a.ns, b.ipv4, { count: 3, interval: 0.1 });
  t.is(again.received, 3, 'a still reaches b');

  // Datagrams that start like a handshake but have another size never reach JS: malformed, not punted.
  const links = async () => (await d1.get('/engine/links')).global;
  const l0 = await links();
  const fakeInit = '01000000' + '00'.repeat(996);
  const shortResp = '02000000' + '00'.repeat(40);
  await runIn(h3.ns, 'node', [SEND_UDP, h1.underlayIp, '51830', '4', fakeInit, shortResp]);
  const l1 = await until('h1 counts the odd-sized handshakes', async () => {
    const l = await links();
    return l.drops.malformed - l0.drops.malformed >= 8 ? l : undefined;
  });
  t.is(l1.drops.malformed - l0.drops.malformed, 8);
  t.is(l1.handshakes_rx, l0.handshakes_rx, 'none was punted as a handshake');
});

test('static mode: a link peer sending into a VNI whose flood list lacks it is dropped as vni_not_shared; a shared VNI passes', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-trust-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = (h: string) => path.join(dir, `${h}.key`);
  // First start: each host makes its key; read the public keys, then start again with each other as peers.
  const keys: Record<string, string> = {};
  for (const h of [h1, h2]) {
    const d = await net.startAppnetd(h, { link: { keyFile: keyFile(h.name) } });
    keys[h.name] = (await d.get('/engine/links')).publicKey;
    await d.stop();
  }
  const ia = await net.addInstance('sa');
  const ib = await net.addInstance('sb');
  // VNI 100: h2 floods to h1, but h1's flood list for it is empty (h1 does not share it with h2).
  // VNI 200: both list each other.
  const config = (self: typeof h1, peer: typeof h1, inst: typeof ia, shared100: boolean) => ({
    vnis: [
      { vni: 100, encrypted: true, flood: shared100 ? [peer.underlayIp] : [] },
      { vni: 200, encrypted: true, flood: [peer.underlayIp] },
    ],
    ports: [
      { name: 'nsh100', kind: 'tap', vni: 100, netns: inst.ns },
      { name: 'nsh200', kind: 'tap', vni: 200, netns: inst.ns },
    ],
    link: { keyFile: keyFile(self.name), peers: [{ address: peer.underlayIp, publicKey: keys[peer.name] }] },
  });
  const d1 = await net.startAppnetd(h1, config(h1, h2, ia, false) as any);
  await net.startAppnetd(h2, config(h2, h1, ib, true) as any);
  for (const [inst, host] of [[ia, 1], [ib, 2]] as const) {
    await runIn(inst.ns, 'ip', ['addr', 'add', `198.18.64.${host}/24`, 'dev', 'nsh100']);
    await runIn(inst.ns, 'ip', ['addr', 'add', `198.18.65.${host}/24`, 'dev', 'nsh200']);
  }

  const shared = await until('ping over the shared VNI', async () => {
    const r = await net.ping(ib.ns, '198.18.65.1', { count: 2, interval: 0.2 });
    return r.received > 0 ? r : undefined;
  }, 40);
  t.true(shared.received > 0);
  const before = (await d1.get('/engine/counters')).wire.drops.vni_not_shared ?? 0;
  const lost = await net.ping(ib.ns, '198.18.64.1', { count: 3, interval: 0.2 });
  t.is(lost.received, 0, 'nothing crossed into the VNI h1 does not share with h2');
  const c = await d1.get('/engine/counters');
  t.true((c.wire.drops.vni_not_shared ?? 0) - before >= 3, JSON.stringify(c.wire.drops));
  t.is(c.ports.find((p: any) => p.name === 'nsh100')?.tx_packets ?? 0, 0);
});

test('100,000 handshake initiations a second at the link port: a DHCP client gets its lease and an encrypted ping loses nothing', async (t) => {
  const net = await TestNet.create(t, { hosts: 3 });
  const [h1, h2, h3] = net.hosts; // h3: the flooder, no daemon
  const dir = mkdtempSync(path.join(os.tmpdir(), 'appnet-flood-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const flood = path.join(dir, 'udp-flood');
  await runIn(h1.ns, 'cc', ['-O2', '-o', flood, fileURLToPath(new URL('./helpers/udp-flood.c', import.meta.url))]);
  const cp = await controlPlaneConfig(net);
  const d1 = await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const dhcpNet = await cliJson(h1.ns, 'network', 'create', 'fl-dhcp', '198.18.66.0/24', '--no-nat');
  const secret = await cliJson(h1.ns, 'network', 'create', 'fl-enc', '198.18.67.0/24', '--no-dhcp', '--no-nat', '--encrypt');
  const a = await natInstance(net, h1, 'fa', secret);
  const b = await natInstance(net, h2, 'fb', secret);
  const c = await net.addInstance('fc');
  const ci = await cliJson(h1.ns, 'instance', 'create', 'fc', '--host', 'h1', '--netns', c.ns, '--network', dhcpNet.uuid);
  const tap = deviceName(ci.interfaces[0]);
  await until('the DHCP instance\'s TAP', async () => ((await runIn(c.ns, 'ip', ['link', 'show', 'dev', tap], { reject: false })).code === 0 ? true : undefined));
  t.is((await net.ping(a.ns, b.ipv4, { count: 3, interval: 0.1 })).received, 3, 'the link is up before the flood');
  const l0 = (await d1.get('/engine/links')).global;

  // 300,000 initiations of the right size from one address, at 100,000 a second; meanwhile DHCP and ping.
  const initiation = '01000000' + '00'.repeat(144);
  const flooding = runIn(h3.ns, flood, [h1.underlayIp, '51830', '100000', '300000', initiation], { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  const [lease, ping] = await Promise.all([
    runIn(c.ns, 'udhcpc', ['-i', tap, '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', '/bin/true'], { timeoutMs: 30_000, reject: false }),
    net.ping(a.ns, b.ipv4, { count: 150, interval: 0.01 }),
  ]);
  const sent = await flooding;
  t.regex(sent.stdout, /sent 300000/);
  t.log(`flooder: ${sent.stdout.trim()}`);
  t.is(lease.code, 0, lease.stdout + lease.stderr);
  t.regex(lease.stdout + lease.stderr, /lease of 198\.18\.66\.\d+ obtained/);
  t.is(ping.received, 150, ping.output);
  const l1 = (await d1.get('/engine/links')).global;
  const limited = l1.drops.handshake_rate - l0.drops.handshake_rate;
  const punted = l1.handshakes_rx - l0.handshakes_rx;
  t.true(limited >= 250_000, `only ${limited} rate-limited`);
  t.true(punted < 200, `${punted} punted to JS`);
});

test('the FDB is bounded per VNI: new MACs off the wire beyond the limit are fdb_full; learnt entries age out, refreshed ones stay', async (t) => {
  const net = await TestNet.create(t, { hosts: 2 });
  const [h1, h2] = net.hosts;
  const cp = await controlPlaneConfig(net, { fdbLimit: 8, ageingSeconds: 3 });
  const d1 = await net.startAppnetd(h1, cp);
  await net.startAppnetd(h2, cp);
  const network = await cliJson(h1.ns, 'network', 'create', 'bounded', '198.18.68.0/24', '--no-dhcp', '--no-nat');
  const a = await natInstance(net, h1, 'ba', network);
  const vni = network.vxlan_id as number;
  const fdb = async () => (await d1.get(`/engine/fdb/${vni}`)) as Array<{ mac: string; remote: string | null; static: boolean }>;
  const learnt = async () => (await fdb()).filter((e) => e.remote !== null && !e.static);
  const drops = async () => (await d1.get('/engine/counters')).vnis[String(vni)]?.drops.fdb_full ?? 0;
  await until('h1 accepts VXLAN from h2', async () => ((await d1.get('/engine/counters')).wire.rx_packets >= 0 ? true : undefined));
  const room = 8 - (await fdb()).length;
  t.true(room > 0 && room <= 8, `room ${room}`);
  // 20 new source MACs from h2 (a registered host), to a's MAC: room of them are learnt, the rest are fdb_full.
  const macs = Array.from({ length: 20 }, (_, i) => `02:00:00:68:00:${(i + 16).toString(16).padStart(2, '0')}`);
  await runIn(h2.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '1', ...macs.map((m) => vxlan(vni, a.iface.macaddr, m))]);
  const full = await until('h1 counts fdb_full', async () => ((await drops()) >= 20 - room ? drops() : undefined));
  t.is(full, 20 - room);
  t.is((await fdb()).length, 8);
  t.deepEqual((await learnt()).map((e) => e.mac).sort(), macs.slice(0, room).sort());

  // Ageing (3 s): one MAC is refreshed every 500 ms, the others go quiet. They expire; it stays; then the room
  // they leave takes new MACs again.
  const keep = vxlan(vni, a.iface.macaddr, macs[0]!);
  let refreshing = true;
  const refresher = (async () => {
    while (refreshing) {
      await runIn(h2.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '1', keep]);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  const aged = await until('the quiet MACs age out', async () => {
    const l = await learnt();
    return l.length === 1 ? l : undefined;
  }, 60).finally(() => { refreshing = false; });
  await refresher;
  t.deepEqual(aged.map((e) => e.mac), [macs[0]]);
  await runIn(h2.ns, 'node', [SEND_UDP, h1.underlayIp, '4789', '1', vxlan(vni, a.iface.macaddr, macs[19]!)]);
  t.truthy(await until('a new MAC is learnt again', async () => ((await learnt()).some((e) => e.mac === macs[19]) ? true : undefined)));
  t.is(await drops(), full, 'no more fdb_full once there was room');
});

test('a TUN port\'s neighbour table is bounded and ages: ARP from new addresses beyond the limit is fdb_full until entries expire', async (t) => {
  let tun: { ns: string } | undefined;
  const { net, daemons } = await buildOverlay(t, {
    hosts: 2, ageingSeconds: 3, daemon: { fdbLimit: 16 },
    extraPorts: async (h, n) => {
      if (h.index !== 2) return [];
      tun = await n.addInstance('tunn');
      return [{ name: 'tun42', kind: 'tun', vni: 42, ipv4: '198.18.42.20', mac: '02:00:00:2a:00:20', netns: tun.ns }];
    },
  });
  const [h1, h2] = net.hosts;
  const d2 = daemons[1]!;
  const drops = async () => (await d2.get('/engine/counters')).ports.find((p: any) => p.name === 'tun42').drops.fdb_full as number;
  /** A VXLAN datagram (VNI 42) with an ARP request from `spa` for an address nobody has. */
  const arp = (spa: number) => {
    const m = mac('02:00:00:69:00:01');
    const body = Buffer.concat([Buffer.from([0, 1, 8, 0, 6, 4, 0, 1]), m, Buffer.from([198, 18, 43, spa]), Buffer.alloc(6), Buffer.from([198, 18, 42, 99])]);
    const frame = Buffer.concat([mac('ff:ff:ff:ff:ff:ff'), m, Buffer.from([0x08, 0x06]), body]);
    return Buffer.concat([Buffer.from([0x08, 0, 0, 0, 0, 0, 42, 0]), frame]).toString('hex');
  };
  const before = await drops();
  await runIn(h1.ns, 'node', [SEND_UDP, h2.underlayIp, '4789', '1', ...Array.from({ length: 30 }, (_, i) => arp(10 + i))]);
  const full = await until('the TUN port counts fdb_full', async () => ((await drops()) - before >= 14 ? (await drops()) - before : undefined));
  t.is(full, 14, '30 new neighbours, room for 16');
  // After the ageing time they expire; the next new neighbour is learnt (no drop).
  await new Promise((r) => setTimeout(r, 4500));
  const vniRx = async () => (await d2.get('/engine/counters')).vnis['42'].rx_packets as number;
  const rx0 = await vniRx();
  await runIn(h1.ns, 'node', [SEND_UDP, h2.underlayIp, '4789', '1', arp(100), arp(101)]);
  await until('h2 took both datagrams in', async () => ((await vniRx()) - rx0 >= 2 ? true : undefined));
  t.is((await drops()) - before, 14, 'expired neighbours made room');
  t.truthy(tun);
});
