// What an attacker on the underlay can do to an encrypted link, and what the receiver does about
// it: replayed and corrupted data messages are dropped and counted without disturbing traffic; a
// host whose key is not registered in the store never gets a session, and its packets are dropped.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { tsharkFields } from './helpers/testnet.ts';
import { cliJson } from './helpers/api-in-ns.ts';
import { buildLinkNet, until } from './helpers/link-net.ts';
import { runIn } from './helpers/run.ts';
import { sealData } from '../dataplane/wire/link.ts';

const SEND_UDP = fileURLToPath(new URL('./helpers/send-udp.mjs', import.meta.url));

function peerOf(links: any) {
  return links.peers[0];
}

async function captureDataMessages(net: any, t: any, from: string, to: { ns: string }, traffic: () => Promise<unknown>): Promise<string[]> {
  const cap = await net.capture(to.ns, 'ul0', { filter: `udp and src host ${from} and dst port 51830` });
  await traffic();
  const file = await cap.stop();
  const rows = tsharkFields(file, ['udp.payload'], 'wg.type == 4', ['udp.port==51830,wg']).map((r) => r[0].replace(/:/g, ''));
  t.true(rows.length >= 5, `captured ${rows.length} data messages`);
  return rows.slice(0, 5);
}

test('replayed and bit-flipped data messages are dropped and counted; traffic is undisturbed', async (t) => {
  const { net, h1, h2, d2, a, addrB } = await buildLinkNet(t);
  const send = (repeat: number, hex: string[]) => runIn(h1.ns, process.execPath, [SEND_UDP, h2.underlayIp, '51830', String(repeat), ...hex]);

  // 1. Replay: messages h2 has already accepted, sent again 20 times each during a ping.
  const seen = await captureDataMessages(net, t, h1.underlayIp, h2, () => net.ping(a.ns, addrB, { count: 10, interval: 0.05 }));
  let before = peerOf(await d2.get('/engine/links'));
  let pinging = net.ping(a.ns, addrB, { count: 30, interval: 0.05 });
  await send(20, seen);
  let p = await pinging;
  t.is(p.received, 30, p.output);
  let after = peerOf(await d2.get('/engine/links'));
  t.is(after.drops.replay - before.drops.replay, 100);
  t.is(after.drops.bad_tag - before.drops.bad_tag, 0);

  // 2. Bit flips: messages h2 never saw (its firewall dropped them after the capture tap), sent
  // with one ciphertext bit flipped: the tag fails. The intact originals are then accepted once
  // (late, inside the replay window), and a second copy is a replay.
  await runIn(h2.ns, 'iptables', ['-I', 'INPUT', '-p', 'udp', '--dport', '51830', '-j', 'DROP']);
  let unseen: string[];
  try {
    unseen = await captureDataMessages(net, t, h1.underlayIp, h2, () => net.ping(a.ns, addrB, { count: 8, interval: 0.05 }));
  } finally {
    await runIn(h2.ns, 'iptables', ['-D', 'INPUT', '-p', 'udp', '--dport', '51830', '-j', 'DROP']);
  }
  const flipped = unseen.map((hex) => {
    const b = Buffer.from(hex, 'hex');
    b[20] ^= 0x01;  // first ciphertext bytes: the VXLAN header
    return b.toString('hex');
  });
  before = peerOf(await d2.get('/engine/links'));
  pinging = net.ping(a.ns, addrB, { count: 30, interval: 0.05 });
  await send(10, flipped);
  p = await pinging;
  t.is(p.received, 30, p.output);
  after = peerOf(await d2.get('/engine/links'));
  t.is(after.drops.bad_tag - before.drops.bad_tag, 50);
  t.is(after.drops.replay - before.drops.replay, 0);
  // Nothing unauthenticated moved the endpoint.
  t.is(after.roams, 0);
  t.deepEqual(after.endpoint, { address: h1.underlayIp, port: 51830 });
  before = after;
  await send(2, unseen);
  after = peerOf(await d2.get('/engine/links'));
  t.is(after.drops.replay - before.drops.replay, 5, 'second copies are replays');
  t.is(after.drops.bad_tag - before.drops.bad_tag, 0, 'the intact originals opened');
  // As in WireGuard, a genuine packet from a new address:port moves the endpoint (here, the
  // sender's socket); h1's next packet moves it back, and traffic carries on.
  t.is(after.roams, 1);
  p = await net.ping(a.ns, addrB, { count: 10, interval: 0.1 });
  t.true(p.received >= 9, p.output);
  after = peerOf(await d2.get('/engine/links'));
  t.deepEqual(after.endpoint, { address: h1.underlayIp, port: 51830 });
});

test('a host whose key is not registered never completes a handshake; its packets are dropped', async (t) => {
  const { net, h2, d2, a, addrB } = await buildLinkNet(t, { hosts: 3 });
  const h3 = net.hosts[2];
  const hosts = await cliJson(h2.ns, 'host', 'list');
  const h2key = hosts.find((h: any) => h.name === 'h2').public_key;
  // h3 is not in the store: a static-mode daemon that knows h2's key and keeps trying.
  const d3 = await net.startAppnetd(h3, { link: { peers: [{ address: h2.underlayIp, publicKey: h2key }] } });
  const l3 = await until('h3 to give up its first attempts', async () => {
    const l = await d3.get('/engine/links');
    return l.handshakes.sent.initiation >= 3 ? l : undefined;
  });
  t.is(l3.handshakes.completed, 0);
  t.is(peerOf(l3).current, null);
  const l2 = await d2.get('/engine/links');
  t.true(l2.handshakes.failed.unauthorised >= 3, JSON.stringify(l2.handshakes));
  t.false(l2.peers.some((p: any) => p.vtep === h3.underlayIp));

  // Data messages from h3: to an index h2 does not have, and to h1's live index with a made-up key.
  const live = peerOf(l2).current.localIndex as number;
  const before = await d2.get('/engine/links');
  const unknown = Buffer.from(sealData(randomBytes(32), (live ^ 0x5a5a5a5a) >>> 0, 0n, randomBytes(100))).toString('hex');
  const forged = Buffer.from(sealData(randomBytes(32), live, 1n << 40n, randomBytes(100))).toString('hex');
  await runIn(h3.ns, process.execPath, [SEND_UDP, h2.underlayIp, '51830', '25', unknown, forged]);
  const p = await net.ping(a.ns, addrB, { count: 5, interval: 0.1 });
  t.is(p.received, 5);
  const after = await d2.get('/engine/links');
  t.is(after.global.drops.unknown_index - before.global.drops.unknown_index, 25);
  t.is(peerOf(after).drops.bad_tag - peerOf(before).drops.bad_tag, 25);
});
