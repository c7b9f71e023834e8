// Calls a daemon's REST API from inside its host namespace (each host has its own loopback).
import type { ChildProcess } from 'node:child_process';
import { runIn, spawnIn } from './run.ts';
import type { DaemonConfigInput, TestNet } from './testnet.ts';

// node:https rather than fetch, so that an https API can be trusted through its CA file alone.
const SCRIPT = `
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
const [url, method, token, body, ca] = process.argv.slice(1);
const lib = url.startsWith('https:') ? https : http;
const headers = { authorization: 'Bearer ' + token, ...(body ? { 'content-type': 'application/json' } : {}) };
const req = lib.request(url, { method, headers, ...(ca ? { ca: readFileSync(ca) } : {}) }, (res) => {
  let text = '';
  res.on('data', (c) => (text += c));
  res.on('end', () => {
    let parsed = null;
    try { parsed = JSON.parse(text); } catch {}
    process.stdout.write(JSON.stringify({ status: res.statusCode, body: parsed }));
  });
});
req.end(body || undefined);
`;

export async function apiCall(ns: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  return apiAt(ns, 'http://127.0.0.1:7878', method, path, token, body);
}

/** The same at any base URL; `ca` is the PEM file to trust for an https one. */
export async function apiAt(ns: string, base: string, method: string, path: string, token: string, body?: unknown, ca?: string): Promise<{ status: number; body: any }> {
  const r = await runIn(ns, 'node', ['--input-type=module', '-e', SCRIPT, base + path, method, token, body === undefined ? '' : JSON.stringify(body), ca ?? '']);
  return JSON.parse(r.stdout);
}

/** GET a path of the local API with curl: status and body as text (/metrics, pages). */
export async function curl(ns: string, path: string, token?: string): Promise<{ status: number; body: string }> {
  const r = await runIn(ns, 'curl', ['-s', '-w', '\n%{http_code}', ...(token ? ['-H', `Authorization: Bearer ${token}`] : []), `http://127.0.0.1:7878${path}`]);
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}

/** The system token the control-plane tests configure their daemons with. */
export const TEST_TOKEN = 'test-system-token-0123456789';
const APPNET = new URL('../../bin/appnet.js', import.meta.url).pathname;

/** What control-plane tests start every daemon of a net with: one shared SQLite store and the test token. */
export async function controlPlaneConfig(net: TestNet, extra: DaemonConfigInput = {}): Promise<DaemonConfigInput> {
  return { store: await net.storeUrl(), tokens: { [TEST_TOKEN]: 'system' }, ...extra };
}

/** Runs `appnet ... --json` inside a host namespace against that host's API; returns the JSON. */
export async function cliJson(ns: string, ...args: string[]): Promise<any> {
  const r = await runIn(ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, ...args, '--json']);
  return JSON.parse(r.stdout);
}

/** A running `appnet capture` in a host namespace (tracked by the TestNet, so cleaned up on failure). */
export interface CliCapture {
  /** Resolves when the CLI exits (after -c N, or stop()). */
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Ctrl-C, as an operator would. */
  stop(): void;
}

export async function startCliCapture(net: { track(c: ChildProcess): ChildProcess }, ns: string, ...args: string[]): Promise<CliCapture> {
  const child = net.track(spawnIn(ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, 'capture', ...args]));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b));
  child.stderr!.on('data', (b: Buffer) => (stderr += b));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  for (let waited = 0; !/Ctrl-C to stop/.test(stderr); waited += 50) {
    if (child.exitCode !== null || waited > 15_000) throw new Error(`appnet capture ${args.join(' ')} did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Signal the CLI's node process itself (ip netns exec -> env -> node all share the group).
  return { done, stop: () => { try { process.kill(-child.pid!, 'SIGINT'); } catch { /* gone */ } } };
}

/** Runs `appnet ...` (no --json) in a host namespace against that host's API. */
export async function cliRun(ns: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return runIn(ns, 'env', ['APPNET_API=http://127.0.0.1:7878', `APPNET_TOKEN=${TEST_TOKEN}`, 'node', APPNET, ...args]);
}
