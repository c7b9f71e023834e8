// The transport floor of the control-plane benchmark: a bare node:http server that answers each path with
// fixed bytes (a list body as appnetd sent it), for the load client to time with the same client, concurrency
// and namespace as the API. What a route takes beyond this is appnet's; what this takes is moving and receiving
// the bytes on this machine. Started by bench/controlplane-load.ts with a JSON map of path -> file in argv[2];
// prints its port on stdout once listening.
import http from 'node:http';
import { readFileSync } from 'node:fs';

const files = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
const bodies = new Map(Object.entries(files).map(([p, file]) => [p, readFileSync(file)]));
const server = http.createServer((req, res) => {
  const body = bodies.get(req.url ?? '');
  if (body === undefined) return res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length }).end(body);
});
server.keepAliveTimeout = 72_000; // as fastify's default: the client's keep-alive sockets stay open
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
