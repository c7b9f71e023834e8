// Calls a daemon's REST API from inside its host namespace (each host has its own loopback).
import { runIn } from './run.ts';

const SCRIPT = `
const [url, method, token, body] = process.argv.slice(1);
const r = await fetch(url, { method, headers: { authorization: 'Bearer ' + token, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body || undefined });
process.stdout.write(JSON.stringify({ status: r.status, body: await r.json().catch(() => null) }));
`;

export async function apiCall(ns: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const url = `http://127.0.0.1:7878${path}`;
  const r = await runIn(ns, 'node', ['--input-type=module', '-e', SCRIPT, url, method, token, body === undefined ? '' : JSON.stringify(body)]);
  return JSON.parse(r.stdout);
}

/** The system token the control-plane tests configure their daemons with. */
export const TEST_TOKEN = 'test-system-token-0123456789';
const APPNET = new URL('../../bin/appnet.js', import.meta.url).pathname;

/** Runs `appnet ... --json` inside a host namespace against that host's API; returns the JSON. */
export async function cliJson(ns: string, ...args: string[]): Promise<any> {
  const r = await runIn(ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, ...args, '--json']);
  return JSON.parse(r.stdout);
}
