#!/usr/bin/env node
// One TCP bulk transfer with end-to-end integrity, for tests across namespaces.
//
//   tcp-transfer.mjs server <port> [bindAddr]       prints "listening", accepts one connection, and after the
//                                                   peer half-closes prints {"bytes":N,"sha256":"..."}
//   tcp-transfer.mjs client <addr> <port> <bytes> [seed]
//                                                   sends <bytes> of xorshift32 data (seed default 1), waits
//                                                   for the server to close, prints {"bytes":N,"sha256":"..."}
//   tcp-transfer.mjs server-send <port> <bytes> [seed]
//   tcp-transfer.mjs client-receive <addr> <port>   the same with the data flowing from server to client (a
//                                                   download: the client opens the connection, the server sends)
//
// Exit code 0 on success, 1 with a message on stderr otherwise. No dependencies.

import { createHash } from 'node:crypto';
import net from 'node:net';

const CHUNK = 64 * 1024;

function fail(message) {
  process.stderr.write(`tcp-transfer: ${message}\n`);
  process.exit(1);
}

function report(bytes, hash) {
  process.stdout.write(`${JSON.stringify({ bytes, sha256: hash.digest('hex') })}\n`);
}

// Reads until the peer half-closes, then reports and closes our side.
function receive(sock, what) {
  const hash = createHash('sha256');
  let bytes = 0;
  sock.on('data', (chunk) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  sock.on('end', () => {
    report(bytes, hash);
    sock.end();
  });
  sock.on('error', (e) => fail(`${what}: ${e.message}`));
}

// Writes `total` bytes of xorshift32 data, half-closes, and reports once the peer has closed too.
function send(sock, total, seed, what) {
  let state = seed >>> 0 || 1;
  const hash = createHash('sha256');
  let sent = 0;
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
  sock.on('error', (e) => fail(`${what}: ${e.message}`));
  sock.on('close', (hadError) => {
    if (!hadError) report(sent, hash);
  });
  sock.resume(); // the peer sends nothing; consume its FIN
  return pump;
}

function listen(port, bindAddr, onConnection) {
  const srv = net.createServer({ allowHalfOpen: true }, (sock) => {
    srv.close(); // one connection only
    onConnection(sock);
  });
  srv.on('error', (e) => fail(`listen ${bindAddr}:${port}: ${e.message}`));
  srv.listen(port, bindAddr, () => process.stdout.write('listening\n'));
}

function bytesArg(s) {
  const total = Number(s);
  if (!Number.isSafeInteger(total) || total < 0) fail(`bytes must be a non-negative integer, got ${s}`);
  return total;
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'server' && args.length >= 1) {
  listen(Number(args[0]), args[1] ?? '0.0.0.0', (sock) => receive(sock, 'server connection'));
} else if (mode === 'server-send' && args.length >= 2) {
  const total = bytesArg(args[1]);
  listen(Number(args[0]), '0.0.0.0', (sock) => send(sock, total, Number(args[2] ?? 1), 'server connection')());
} else if (mode === 'client' && args.length >= 3) {
  const total = bytesArg(args[2]);
  const sock = net.connect({ host: args[0], port: Number(args[1]) });
  sock.on('connect', send(sock, total, Number(args[3] ?? 1), `client ${args[0]}:${args[1]}`));
} else if (mode === 'client-receive' && args.length >= 2) {
  const sock = net.connect({ host: args[0], port: Number(args[1]), allowHalfOpen: true });
  receive(sock, `client ${args[0]}:${args[1]}`);
} else {
  fail('usage: tcp-transfer.mjs server <port> [bindAddr] | client <addr> <port> <bytes> [seed] | server-send <port> <bytes> [seed] | client-receive <addr> <port>');
}
