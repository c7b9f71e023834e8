// Polling for a condition that a daemon reaches asynchronously (state written back, a TAP addressed, a
// session up): `fn` returns undefined until it holds. The limit only bounds how long a failing test
// waits; nothing asserts on how long it took.
import { setTimeout as sleep } from 'node:timers/promises';

export async function until<T>(what: string, fn: () => Promise<T | undefined>, tries = 160, everyMs = 250): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}
