// Serialised list responses, reused while the state view they were built from has not changed.
//
// Why: GET /instances for a tenant with 200 instances is ~310 KB of JSON, rebuilt and serialised on
// every request (~2 ms of the event loop, most of it JSON.stringify; fast-json-stringify with the route's
// schema measured no faster on this shape). With 8 requests in flight that made its p50 ~15-45 ms. Lists
// are polled far more often than the records under them change. Bodies are kept as UTF-8 bytes: sending a
// 310 KB string encodes it again on every request (~1 ms each on this machine).
//
// Contracts:
//   1. The view's onChange fires after every change it applies (and after a re-read), so a counter of
//      those calls names a state of the view. An entry is served only if the counter has not moved
//      since it was built; the caller syncs the view first, so "not moved" means nothing was committed
//      since (StateView.sync's guarantee), and a cached list is never staler than a rebuilt one.
//   2. A body is cached only if the counter did not move while it was built (the build awaits the
//      view's sync, during which changes may be applied): an entry never mixes two states.
//   3. Bounded: at most maxBytes of bodies (oldest dropped first); a larger body is not cached.
//   4. Requests that miss at the same version while a build for their key runs wait for it instead of
//      building again (8 requests in flight after a change would otherwise serialise 8 copies): the build
//      started after they synced, at the version they saw, so its body is as fresh as their own would be.
import type { StateView } from '../repo/state-view.ts';

interface Entry { version: number; body: Buffer }

export class ListCache {
  #version = 0;
  #bytes = 0;
  readonly #entries = new Map<string, Entry>();
  readonly #maxBytes: number;
  readonly #unfollow: () => void;

  constructor(view: StateView, options: { maxBytes?: number } = {}) {
    this.#maxBytes = options.maxBytes ?? 2 * 1024 * 1024;
    this.#unfollow = view.onChange(() => { this.#version++; });
  }

  /**
   * The JSON of build()'s result for `key` as UTF-8, or the cached bytes (contract 1: sync the view first).
   * Callers that miss together at one version share one build (contract 4).
   */
  json(key: string, build: () => Promise<unknown>): Promise<Buffer> {
    const before = this.#version;
    const hit = this.#entries.get(key);
    if (hit !== undefined && hit.version === before) return Promise.resolve(hit.body);
    const pending = this.#building.get(key);
    if (pending !== undefined && pending.version === before) return pending.body;
    const body = build().then((value) => {
      const bytes = Buffer.from(JSON.stringify(value));
      if (this.#version === before) this.#set(key, { version: before, body: bytes });
      return bytes;
    });
    const entry = { version: before, body };
    this.#building.set(key, entry);
    const done = () => { if (this.#building.get(key) === entry) this.#building.delete(key); };
    body.then(done, done);
    return body;
  }

  readonly #building = new Map<string, { version: number; body: Promise<Buffer> }>();

  /** Stops following the view and drops every entry. */
  close(): void {
    this.#unfollow();
    this.#entries.clear();
    this.#bytes = 0;
  }

  #set(key: string, entry: Entry): void {
    this.#drop(key);
    if (entry.body.length > this.#maxBytes) return;
    while (this.#bytes + entry.body.length > this.#maxBytes) this.#drop(this.#entries.keys().next().value as string);
    this.#entries.set(key, entry);
    this.#bytes += entry.body.length;
  }

  #drop(key: string): void {
    const old = this.#entries.get(key);
    if (old === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= old.body.length;
  }
}
