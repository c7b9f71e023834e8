// Packet capture as an operator uses it: `appnet capture` at the engine's capture points, files that
// tshark and our decoder read alike, link packets decrypted with an exported keylog (and unreadable
// without it), a tiny ring that drops copies but never traffic, and replay of a recorded exchange.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { decodeFrame, parseKeylog, type Layer } from '../dataplane/decode/index.ts';
import { readCapture } from '../dataplane/pcap/index.ts';
import { tsharkFields } from './helpers/testnet.ts';
import { apiCall, cliRun, startCliCapture, TEST_TOKEN } from './helpers/api-in-ns.ts';
import { buildLinkNet } from './helpers/link-net.ts';
import { iperf3 } from './helpers/iperf.ts';
import { runIn, spawnIn } from './helpers/run.ts';

const layer = (ls: Layer[], name: string, nth = 0) => ls.filter((l) => l.name === name)[nth]?.fields as Record<string, any> | undefined;

/** The innermost IPv4 + ICMP of a frame, as "src>dst type seq". */
function icmpKey(ls: Layer[]): string | undefined {
  const ips = ls.filter((l) => l.name === 'ipv4');
  const icmp = layer(ls, 'icmp');
  if (!icmp || ips.length === 0) return undefined;
  const ip = ips[ips.length - 1].fields as Record<string, any>;
  return `${ip.src}>${ip.dst} ${icmp.type} ${icmp.seq}`;
}

test('a capture during a ping is read by tshark and by our decoder alike, in pcap, pcap-ns and pcapng', async (t) => {
  const x = await buildLinkNet(t, { encrypt: false });
  const dir = path.dirname(x.d1.config.adminSocket);
  for (const format of ['pcap', 'pcap-ns', 'pcapng'] as const) {
    const file = path.join(dir, `ping.${format}`);
    const cap = await startCliCapture(x.net, x.h1.ns, '--network', x.network.uuid, '-c', '10', '-w', file, '--format', format, 'icmp');
    const ping = await x.net.ping(x.a.ns, x.addrB, { count: 5, interval: 0.1 });
    t.is(ping.received, 5);
    const done = await cap.done;
    t.is(done.code, 0, done.stderr);
    t.regex(done.stderr, /10 packets/);

    const ours = readCapture(readFileSync(file));
    t.is(ours.format, format);
    const theirs = tsharkFields(file, ['ip.src', 'ip.dst', 'icmp.type', 'icmp.seq']);
    t.is(ours.packets.length, 10);
    t.is(theirs.length, ours.packets.length);
    const decoded = ours.packets.map((p) => {
      const ls = decodeFrame(p.data);
      const ip = layer(ls, 'ipv4')!;
      const icmp = layer(ls, 'icmp')!;
      return [ip.src, ip.dst, String(icmp.type), String(icmp.seq)];
    });
    t.deepEqual(decoded, theirs);
    // Requests leave the VNI towards the wire (vni_encap), replies come in (vni_decap).
    t.is(decoded.filter((r) => r[2] === '8').length, 5);
    t.is(decoded.filter((r) => r[2] === '0').length, 5);
  }
});

test('a wire capture of an encrypted link decodes, with the exported keylog, to the port capture; without it, nothing', async (t) => {
  const x = await buildLinkNet(t, { onlyH1: { link: { allowKeyExport: true } } });
  const dir = path.dirname(x.d1.config.adminSocket);
  const wireFile = path.join(dir, 'wire.pcapng');
  const portFile = path.join(dir, 'port.pcapng');
  const wire = await startCliCapture(x.net, x.h1.ns, '--point', 'wire', '-w', wireFile, 'udp port 51830');
  const port = await startCliCapture(x.net, x.h1.ns, '--port', x.ifaceA, '-w', portFile, 'icmp');
  const ping = await x.net.ping(x.a.ns, x.addrB, { count: 8, interval: 0.1 });
  t.is(ping.received, 8);
  await new Promise((r) => setTimeout(r, 500));  // the last poll
  wire.stop();
  port.stop();
  t.is((await wire.done).code, 0);
  t.is((await port.done).code, 0);

  // Keys of h1's sessions (both directions): an operator action, recorded as an event.
  const keylogFile = path.join(dir, 'keys.log');
  await cliRun(x.h1.ns, 'keys', 'export', '-w', keylogFile);
  const keys = parseKeylog(readFileSync(keylogFile, 'utf8'));
  const events = await apiCall(x.h1.ns, 'GET', '/hosts/h1/events', TEST_TOKEN);
  t.is(events.status, 200);
  t.regex(events.body[0].message, /keys exported/);

  const portKeys = readCapture(readFileSync(portFile)).packets.map((p) => icmpKey(decodeFrame(p.data))).filter(Boolean).sort();
  t.is(portKeys.length, 16, 'port capture: 8 requests and 8 replies');
  const wirePackets = readCapture(readFileSync(wireFile)).packets;
  const clear = wirePackets.map((p) => decodeFrame(p.data, { keys })).map(icmpKey).filter(Boolean).sort();
  t.deepEqual(clear, portKeys);
  // Without the keylog: link layers, encrypted, and no inner IP anywhere.
  for (const p of wirePackets) {
    const ls = decodeFrame(p.data);
    t.is(ls.filter((l) => l.name === 'ipv4').length, 1, 'only the outer IPv4 header');
    const link = layer(ls, 'link');
    t.truthy(link, 'every wire packet is a link message');
    if (link?.type === 4) t.is(link.state, 'encrypted');
    t.is(icmpKey(ls), undefined);
  }
  // Operators only: key export is refused where it is not enabled (h2 keeps the default).
  const refused = await apiCall(x.h2.ns, 'POST', '/links/keys/export', TEST_TOKEN, {});
  t.is(refused.status, 403);
  t.regex(refused.body.error, /allowKeyExport/);
});

test('with a tiny ring during iperf3, capture copies are dropped and counted; forwarding loses nothing extra', async (t) => {
  const x = await buildLinkNet(t, { encrypt: false });
  const drops = async () => {
    const c = await x.d1.get('/engine/counters');
    const sum = (d: Record<string, number>) => Object.values(d).reduce((s, n) => s + n, 0);
    return sum(c.wire.drops) + Object.values(c.vnis).reduce((s: number, v: any) => s + sum(v.drops), 0) + c.ports.reduce((s: number, p: any) => s + sum(p.drops), 0);
  };
  const before = await drops();
  const cap = await startCliCapture(x.net, x.h1.ns, '--point', 'port', '--point', 'vni_encap', '--point', 'vni_decap', '--point', 'wire',
    '--ring', '4', '--poll-ms', '1000', '--snaplen', '128', '--progress', '-w', path.join(path.dirname(x.d1.config.adminSocket), 'tiny.pcapng'));
  const r = await iperf3(x.net, x.a.ns, x.b.ns, x.addrB, [], 3);
  const xfer = await x.net.tcpTransfer(x.a.ns, x.b.ns, x.addrB, 5 * 1024 * 1024);
  cap.stop();
  const done = await cap.done;
  t.is(done.code, 0, done.stderr);
  const m = /the engine copied (\d+), dropped (\d+)/.exec(done.stderr);
  t.truthy(m, done.stderr);
  t.true(Number(m![2]) > 1000, `only ${m![2]} copies dropped`);
  // --progress: packets and bytes so far while it ran (one line per update, stderr being no terminal here),
  // growing, and the size in the final summary.
  const lines = [...done.stderr.matchAll(/appnet capture: (\d+) packets, ([\d.]+ k?B|[\d.]+ [MG]B) written to \S+tiny\.pcapng/g)];
  t.true(lines.length >= 2, done.stderr);
  t.true(Number(lines[lines.length - 1][1]) > Number(lines[0][1]), done.stderr);
  t.regex(done.stderr, /appnet capture: \d+ packets \([\d.]+ [kMG]?B\) written to \S+tiny\.pcapng; the engine copied/);
  t.true(Number(m![1]) > 0);
  t.is(xfer.receivedSha256, xfer.sentSha256);
  t.true(r.end.sum_received.bytes > 0);
  t.is(await drops(), before, 'the engine dropped traffic while capturing');
  t.log(`iperf3 with a 4-record ring: ${(r.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s; capture copied ${m![1]}, dropped ${m![2]}`);
});

test('replaying a recorded DHCP exchange into a port reproduces the server\'s answers', async (t) => {
  const x = await buildLinkNet(t, { encrypt: false });
  const dir = path.dirname(x.d1.config.adminSocket);
  // A real DHCP server in instance b (dnsmasq), a real client in instance a (udhcpc).
  const devB = (await runIn(x.b.ns, 'ip', ['-o', 'link', 'show'])).stdout.match(/(an[0-9a-f]{8})/)![1];
  const devA = (await runIn(x.a.ns, 'ip', ['-o', 'link', 'show'])).stdout.match(/(an[0-9a-f]{8})/)![1];
  const leases = path.join(dir, 'leases');
  writeFileSync(leases, '');
  x.net.track(spawnIn(x.b.ns, 'dnsmasq', [
    '--keep-in-foreground', '--user=root', '--port=0', `--interface=${devB}`, '--bind-interfaces',
    '--dhcp-range=198.18.110.100,198.18.110.150,255.255.255.0,1h', `--dhcp-leasefile=${leases}`, '--no-resolv', '--no-hosts',
  ]));
  await new Promise((r) => setTimeout(r, 1000));
  const first = path.join(dir, 'dhcp.pcapng');
  const cap = await startCliCapture(x.net, x.h1.ns, '--port', x.ifaceA, '-w', first, 'udp port 67 or udp port 68');
  await runIn(x.a.ns, 'udhcpc', ['-i', devA, '-n', '-q', '-f', '-t', '5', '-s', '/bin/true']);
  await new Promise((r) => setTimeout(r, 500));
  cap.stop();
  await cap.done;
  const types = (file: string, point: RegExp) => readCapture(readFileSync(file)).packets
    .filter((p) => point.test(p.point ?? ''))
    .map((p) => layer(decodeFrame(p.data), 'dhcp')?.messageTypeName as string);
  // A slow answer makes udhcpc resend, so compare the kinds of message, in order of first appearance.
  const kinds = (list: string[]) => [...new Set(list)];
  const sent = types(first, /:in$/);
  const answers = types(first, /:out$/);
  t.deepEqual(kinds(sent), ['DISCOVER', 'REQUEST'], `client sent ${sent}`);
  t.deepEqual(kinds(answers), ['OFFER', 'ACK'], `server answered ${answers}`);

  // Replay the client's frames into its port: the server answers again, the same way.
  const second = path.join(dir, 'replayed.pcapng');
  const cap2 = await startCliCapture(x.net, x.h1.ns, '--port', x.ifaceA, '-w', second, 'udp port 67 or udp port 68');
  const pointIn = readCapture(readFileSync(first)).packets.find((p) => /:in$/.test(p.point ?? ''))!.point!;
  const out = await cliRun(x.h1.ns, 'replay', first, '--port', x.ifaceA, '--point', pointIn, '--rate', '5');
  t.regex(out.stdout, new RegExp(`replayed ${sent.length} frames`));
  await new Promise((r) => setTimeout(r, 1000));
  cap2.stop();
  await cap2.done;
  t.deepEqual(kinds(types(second, /:out$/)), ['OFFER', 'ACK']);
});
