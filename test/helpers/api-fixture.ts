// A REST API over a fresh SQLite store file, driven with fastify's inject (no socket), for the
// API contract tests. Removed with the test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApi } from '../../control/api/app.ts';
import { NetworkRepository } from '../../control/repo/networks.ts';
import { openStore } from '../../control/store/index.ts';

export const POOL = '198.19.0.0/24';
export const TOKENS = new Map([
  ['tok-sys', 'system'],
  ['tok-a', 'alpha'],
  ['tok-b', 'beta'],
]);

/** `interfaceCount` replaces the real interface count (network tests that need delete-wait). */
export async function apiFixture(t: { teardown: (fn: () => Promise<void> | void) => void }, opts: { interfaceCount?: () => number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'appnet-api-'));
  const store = await openStore(join(dir, 'store.db'));
  const app = buildApi({ store, tokens: TOKENS, floatingPool: POOL, ...(opts.interfaceCount ? { interfaceCount: opts.interfaceCount } : {}) });
  await app.ready();
  t.teardown(async () => {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const repo = new NetworkRepository({ store, floatingPool: POOL });
  const call = async (method: string, url: string, token: string | null, payload?: unknown) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const res = await app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload: payload as object } : {}) });
    return { status: res.statusCode, body: res.body === '' ? undefined : res.json() };
  };
  return { app, store, repo, call };
}
