// Sends hex-encoded UDP payloads to addr:port, `repeat` times each, then exits.
// usage: node send-udp.mjs <addr> <port> <repeat> <hex> [<hex> ...]
import dgram from 'node:dgram';

const [addr, port, repeat, ...payloads] = process.argv.slice(2);
const sock = dgram.createSocket('udp4');
for (let r = 0; r < Number(repeat); r++) {
  for (const hex of payloads) {
    await new Promise((resolve, reject) => sock.send(Buffer.from(hex, 'hex'), Number(port), addr, (e) => (e ? reject(e) : resolve())));
  }
}
sock.close();
