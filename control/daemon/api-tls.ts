// TLS of the REST API. Plain HTTP is served only on a loopback address; on any other address the
// API speaks only TLS, with
//   - the operator's certificate and key (config `api.tls: {cert, key}`, PEM files), or else
//   - a host certificate appnetd makes on first start in `<stateDir>/tls/`, signed by a CA in the
//     same directory (made first if absent). An operator who wants one CA for every host puts the
//     same ca.pem and ca.key there before each host's first start (docs/api-auth.md).
//
// The CA key never goes into the store: whoever reads the store could then mint certificates.
// Hosts do not need a common CA to trust each other: each host record carries its certificate
// chain (`certificate`), and peers pin it (control/api/peer-client.ts).
//
// Certificates are made with Debian's `openssl` (execFile, no shell): node:crypto makes keys but
// cannot issue X.509 certificates, and a hand-written ASN.1/DER encoder would be more code that
// has to be exactly right than the dozen lines here.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ApiTls {
  cert: string;
  key: string;
  /** What the host record publishes for peers to pin: the certificate, then its CA (if separate). */
  chain: string;
  /** Where the files came from, for the log and the docs. */
  source: string;
}

/** True for 127.0.0.0/8: the only addresses the API may serve plain HTTP on. */
export function isLoopback(address: string): boolean {
  return /^127\./.test(address);
}

/** The PEM blocks of a file, in order. */
export function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The API's TLS material for a non-loopback address; undefined on loopback (plain HTTP). */
export async function apiTls(o: { address: string; host: string; tls?: { cert: string; key: string }; stateDir: string }): Promise<ApiTls | undefined> {
  if (isLoopback(o.address)) return undefined;
  if (o.tls) {
    const cert = readFileSync(o.tls.cert, 'utf8');
    const key = readFileSync(o.tls.key, 'utf8');
    if (pemBlocks(cert).length === 0) throw new Error(`api.tls.cert ${o.tls.cert} holds no PEM certificate`);
    new X509Certificate(pemBlocks(cert)[0]); // throws with the parser's reason on a bad certificate
    return { cert, key, chain: pemBlocks(cert).join('\n') + '\n', source: o.tls.cert };
  }
  return generated(join(o.stateDir, 'tls'), o.host, o.address);
}

async function generated(dir: string, host: string, address: string): Promise<ApiTls> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKey = join(dir, 'ca.key');
  const caPem = join(dir, 'ca.pem');
  if (!existsSync(caPem)) {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256',
      '-days', '3650', '-subj', `/CN=appnet CA (${host})`, '-keyout', caKey, '-out', caPem,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }
  const key = join(dir, `${host}.key`);
  const pem = join(dir, `${host}.pem`);
  if (!existsSync(pem) || !covers(readFileSync(pem, 'utf8'), address)) {
    const csr = join(dir, `${host}.csr`);
    const ext = join(dir, `${host}.ext`);
    writeFileSync(ext, `subjectAltName=IP:${address},DNS:${host}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n`);
    await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-sha256',
      '-subj', `/CN=${host}`, '-keyout', key, '-out', csr]);
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', caPem, '-CAkey', caKey, '-CAcreateserial', '-sha256',
      '-days', '825', '-extfile', ext, '-out', pem]);
  }
  const cert = readFileSync(pem, 'utf8');
  const ca = readFileSync(caPem, 'utf8');
  return { cert, key: readFileSync(key, 'utf8'), chain: `${pemBlocks(cert)[0]}\n${pemBlocks(ca)[0]}\n`, source: pem };
}

/** A generated certificate is made again when the API moved to an address it does not name. */
function covers(pem: string, address: string): boolean {
  try {
    return new X509Certificate(pem).checkIP(address) !== undefined;
  } catch {
    return false;
  }
}
