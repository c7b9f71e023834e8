// UDP datagrams whose every byte can be checked on arrival, sent in bursts so that runs of one flow reach
// the receiving engine together.
//   node udp-bursts.mjs receive ADDR PORT COUNT BURST   prints "listening", then one JSON line once COUNT datagrams
//        arrived, or none came for 3 s (15 s before the first): {received, bad, duplicates, sizes}
//   node udp-bursts.mjs send ADDR PORT COUNT BURST
// Datagram i is (300 + (i / BURST) * 37 % 1100) bytes long, so each burst has its own size: a receiver that got
// datagrams cut at the wrong boundaries sees wrong lengths. Its first 4 bytes are i, the rest a function of i.
import dgram from 'node:dgram';

const [mode, addr, port, countArg, burstArg] = process.argv.slice(2);
const count = Number(countArg);
const burst = Number(burstArg ?? 32);

const sizeOf = (i, b) => 300 + ((Math.floor(i / b) * 37) % 1100);
const byteOf = (i, k) => (Math.imul(i + k, 2654435761) >>> 24) & 0xff;

function datagram(i) {
  const d = Buffer.alloc(sizeOf(i, burst));
  d.writeUInt32BE(i, 0);
  for (let k = 4; k < d.length; k++) d[k] = byteOf(i, k);
  return d;
}

if (mode === 'send') {
  const sock = dgram.createSocket('udp4');
  await new Promise((r) => sock.bind(0, r));
  for (let i = 0; i < count; i += burst) {
    const sends = [];
    for (let j = i; j < Math.min(count, i + burst); j++) {
      sends.push(new Promise((resolve, reject) => sock.send(datagram(j), Number(port), addr, (e) => (e ? reject(e) : resolve()))));
    }
    await Promise.all(sends);
    await new Promise((r) => setTimeout(r, 2));
  }
  sock.close();
} else if (mode === 'receive') {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  const seen = new Set();
  let bad = 0;
  let duplicates = 0;
  const sizes = new Set();
  let idle;
  const finish = () => {
    process.stdout.write(`${JSON.stringify({ received: seen.size, bad, duplicates, sizes: sizes.size })}\n`);
    sock.close();
  };
  const arm = (ms = 3000) => { clearTimeout(idle); idle = setTimeout(finish, ms); };
  sock.on('message', (d) => {
    const i = d.length >= 4 ? d.readUInt32BE(0) : -1;
    let ok = i >= 0 && i < count && d.length === sizeOf(i, burst);
    for (let k = 4; ok && k < d.length; k++) ok = d[k] === byteOf(i, k);
    if (!ok) bad++;
    else if (seen.has(i)) duplicates++;
    else { seen.add(i); sizes.add(d.length); }
    if (seen.size === count) { clearTimeout(idle); finish(); } else arm();
  });
  await new Promise((r) => sock.bind(Number(port), addr, r));
  process.stdout.write('listening\n');
  arm(15_000);
} else {
  process.stderr.write('usage: udp-bursts.mjs receive|send ADDR PORT COUNT BURST\n');
  process.exit(2);
}
