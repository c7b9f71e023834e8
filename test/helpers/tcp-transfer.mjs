#!/usr/bin/env node
// One TCP bulk transfer with end-to-end integrity, for tests across namespaces.
//
//   tcp-transfer.mjs server <port> [bindAddr]       prints "listening", accepts one connection, and after the
//                                                   peer half-closes prints {"bytes":N,"sha256":"..."}
//   tcp-transfer.mjs client <addr> <port> <bytes> [seed]
//                                                   sends <bytes> of xorshift32 data (seed default 1), waits
//                                                   for the server to close, prints {"bytes":N,"sha256":"..."}
//
// Exit code 0 on success, 1 with a message on stderr otherwise. No dependencies.

import { createHash } from 'node:crypto';
import net from 'node:net';

const CHUNK = 64 * 1024;

function fail(message) {
  process.stderr.write(`tcp-transfer: ${message}\n`);
  process.exit(1);
}

function server(port, bindAddr = '0.0.0.0') {
  const srv = net.createServer({ allowHalfOpen: true }, (sock) => {
    srv.close(); // one connection only
    const hash = createHash('sha256');
    let bytes = 0;
    sock.on('data', (chunk) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    sock.on('end', () => {
      process.stdout.write(`${JSON.stringify({ bytes, sha256: hash.digest('hex') })}\n`);
      sock.end();
    });
    sock.on('error', (e) => fail(`server connection: ${e.message}`));
  });
  srv.on('error', (e) => fail(`listen ${bindAddr}:${port}: ${e.message}`));
  srv.listen(port, bindAddr, () => process.stdout.write('listening\n'));
}

function client(addr, port, total, seed) {
  let state = seed >>> 0 || 1;
  const hash = createHash('sha256');
  let sent = 0;
  const sock = net.connect({ host: addr, port });
  const nextChunk = () => {
    const len = Math.min(CHUNK, total - sent);
    const words = new Uint32Array(Math.ceil(len / 4));
    for (let i = 0; i < words.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      words[i] = state >>> 0;
    }
    const chunk = Buffer.from(words.buffer, 0, len);
    hash.update(chunk);
    sent += len;
    return chunk;
  };
  const pump = () => {
    while (sent < total) {
      if (!sock.write(nextChunk())) {
        sock.once('drain', pump);
        return;
      }
    }
    sock.end();
  };
  sock.on('connect', pump);
  sock.on('error', (e) => fail(`client ${addr}:${port}: ${e.message}`));
  sock.on('close', (hadError) => {
    if (!hadError) process.stdout.write(`${JSON.stringify({ bytes: sent, sha256: hash.digest('hex') })}\n`);
  });
  sock.resume(); // the server sends nothing; consume its FIN
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'server' && args.length >= 1) {
  server(Number(args[0]), args[1]);
} else if (mode === 'client' && args.length >= 3) {
  const total = Number(args[2]);
  if (!Number.isSafeInteger(total) || total < 0) fail(`bytes must be a non-negative integer, got ${args[2]}`);
  client(args[0], Number(args[1]), total, Number(args[3] ?? 1));
} else {
  fail('usage: tcp-transfer.mjs server <port> [bindAddr] | client <addr> <port> <bytes> [seed]');
}
