// Bad input is dropped and counted by reason while other traffic carries on; stopping or
// killing the engine leaves no devices behind.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { runIn } from './helpers/run.ts';
import { buildOverlay, counters, port } from './helpers/overlay.ts';

const SEND_UDP = fileURLToPath(new URL('./helpers/send-udp.mjs', import.meta.url));
const REPEAT = 50;

function vxlan(vni: number, frame: Buffer, flags = 0x08): Buffer {
  const h = Buffer.from([flags, 0, 0, 0, (vni >> 16) & 0xff, (vni >> 8) & 0xff, vni & 0xff, 0]);
  return Buffer.concat([h, frame]);
}

function ipv4Frame(dstMac: string, totalLength: number, actualIpBytes: number): Buffer {
  const f = Buffer.alloc(14 + actualIpBytes);
  Buffer.from(dstMac.replaceAll(':', ''), 'hex').copy(f, 0);
  Buffer.from('020000ee0001', 'hex').copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(totalLength, 16);
  f[22] = 64;
  f[23] = 17;
  return f;
}

test('malformed, unknown-VNI and oversize datagrams are dropped and counted while ping keeps 0% loss', async (t) => {
  const { net, daemons, instances: [a, b] } = await buildOverlay(t, { hosts: 2 });
  const target = b.host.underlayIp;

  const bad = {
    short: Buffer.from([0x08, 0, 0]),
    flags: vxlan(42, ipv4Frame(b.mac, 40, 40), 0x0c),
    reserved: (() => { const d = vxlan(42, ipv4Frame(b.mac, 40, 40)); d[7] = 1; return d; })(),
    innerShort: vxlan(42, Buffer.alloc(10)),
    truncated: vxlan(42, ipv4Frame(b.mac, 1000, 40)),
    unknownVni: vxlan(99, ipv4Frame(b.mac, 40, 40)),
    oversize: vxlan(42, ipv4Frame(b.mac, 1600, 1600)),
  };
  const ping = net.ping(a.inst.ns, b.addr, { count: 40, interval: 0.05 });
  await runIn(a.host.ns, 'node', [SEND_UDP, target, '4789', String(REPEAT), ...Object.values(bad).map((d) => d.toString('hex'))]);
  const p = await ping;
  t.is(p.received, 40, p.output);

  const c = await counters(daemons[1]);
  t.is(c.wire.drops.malformed, REPEAT * 5, JSON.stringify(c.wire.drops));
  t.is(c.wire.drops.unknown_vni, REPEAT);
  t.is(port(c, 'tap42').drops.oversize, REPEAT, JSON.stringify(port(c, 'tap42').drops));
  // The engine is still serving.
  t.deepEqual(await daemons[1].get('/healthz'), { ok: true, host: 'h2' });
});

test('an instance frame above the VNI MTU is dropped, counted and answered with "fragmentation needed"', async (t) => {
  const { net, daemons, instances: [a, b] } = await buildOverlay(t, { hosts: 2 });
  // The instance raises its own MTU beyond what the overlay carries and sends with DF set.
  await runIn(a.inst.ns, 'ip', ['link', 'set', 'tap42', 'mtu', '3000']);
  const p = await net.ping(a.inst.ns, b.addr, { count: 2, interval: 0.2, size: 2000, dontFragment: true });
  t.is(p.received, 0);
  t.regex(p.output, /mtu = 1450/, p.output);
  const c = await counters(daemons[0]);
  t.true(port(c, 'tap42').drops.oversize >= 1, JSON.stringify(port(c, 'tap42')));
  // Ordinary traffic is unaffected.
  const ok = await net.ping(a.inst.ns, b.addr, { count: 3, interval: 0.05 });
  t.is(ok.received, 3, ok.output);
});

test('stopping appnetd, or killing it with SIGKILL, leaves no devices behind', async (t) => {
  const { daemons, instances: [a, b] } = await buildOverlay(t, { hosts: 2 });
  const links = async (ns: string) => (await runIn(ns, 'ip', ['-o', 'link', 'show'])).stdout;
  t.regex(await links(a.inst.ns), /tap42/);
  t.regex(await links(b.inst.ns), /tap42/);

  await daemons[0].stop();
  await daemons[1].kill9();
  for (const ns of [a.inst.ns, b.inst.ns, a.host.ns, b.host.ns]) {
    // Devices go when their file descriptor closes; the kernel may take a moment after exit.
    let out = await links(ns);
    for (let i = 0; i < 50 && /tap42/.test(out); i++) {
      await new Promise((r) => setTimeout(r, 100));
      out = await links(ns);
    }
    t.notRegex(out, /tap|tun/, `${ns} still has a device: ${out}`);
  }
});
