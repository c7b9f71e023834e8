// The API's view of everything under /appnet/auth/: the namespaces with their key hashes and the
// JWT signing keys. Both live in the store, never in a local file, so every appnetd (each on its
// own machine) authenticates the same callers and verifies the tokens any of them issued.
//
// One watch keeps the copy current: a key deleted on one host stops verifying on all of them
// within the watch's delay. A watch that ends (compacted history, store fault) re-reads the
// prefix and watches again, so nothing is missed.
import type { KeyValue, Store, Watcher } from '../store/store.ts';

export const AUTH_PREFIX = '/appnet/auth/';
export const NAMESPACES_PREFIX = `${AUTH_PREFIX}namespaces/`;
export const JWT_KEYS_PREFIX = `${AUTH_PREFIX}jwt-keys/`;

export interface NamespaceRecord {
  name: string;
  /** key name -> crypto_pwhash_str hash (key-hash.ts). */
  keys: Record<string, string>;
  created_at: string;
}

export interface SigningKeyRecord {
  kid: string;
  /** 32 random bytes, base64: the HS256 secret. */
  secret: string;
  /** ms since the epoch. */
  created: number;
}

export class AuthState {
  readonly namespaces = new Map<string, NamespaceRecord>();
  readonly signingKeys = new Map<string, SigningKeyRecord>();
  #watcher: Watcher | undefined;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;

  constructor(private readonly store: Store) {}

  async start(): Promise<void> {
    const { kvs, revision } = await this.store.range(AUTH_PREFIX);
    this.namespaces.clear();
    this.signingKeys.clear();
    for (const kv of kvs) this.#apply(kv.key, kv);
    this.#watcher = await this.store.watch(AUTH_PREFIX, {
      fromRevision: revision + 1,
      onError: () => {
        if (this.#closed) return;
        this.#retry = setTimeout(() => void this.start().catch(() => this.#scheduleRetry()), 200);
      },
    }, (events) => {
      for (const e of events) this.#apply(e.kv.key, e.type === 'put' ? e.kv : undefined);
    });
  }

  #scheduleRetry(): void {
    if (!this.#closed) this.#retry = setTimeout(() => void this.start().catch(() => this.#scheduleRetry()), 1000);
  }

  /** Reads the store once more (after this daemon's own write, so that it is visible at once). */
  async refresh(): Promise<void> {
    const { kvs } = await this.store.range(AUTH_PREFIX);
    const seen = new Set(kvs.map((kv) => kv.key));
    for (const kv of kvs) this.#apply(kv.key, kv);
    for (const name of [...this.namespaces.keys()]) if (!seen.has(NAMESPACES_PREFIX + name)) this.namespaces.delete(name);
    for (const kid of [...this.signingKeys.keys()]) if (!seen.has(JWT_KEYS_PREFIX + kid)) this.signingKeys.delete(kid);
  }

  #apply(key: string, kv: KeyValue | undefined): void {
    const parse = <T>(): T | undefined => {
      try {
        return kv ? (JSON.parse(kv.value) as T) : undefined;
      } catch {
        return undefined;
      }
    };
    if (key.startsWith(NAMESPACES_PREFIX)) {
      const name = key.slice(NAMESPACES_PREFIX.length);
      const rec = parse<NamespaceRecord>();
      if (rec) this.namespaces.set(name, rec);
      else this.namespaces.delete(name);
    } else if (key.startsWith(JWT_KEYS_PREFIX)) {
      const kid = key.slice(JWT_KEYS_PREFIX.length);
      const rec = parse<SigningKeyRecord>();
      if (rec) this.signingKeys.set(kid, rec);
      else this.signingKeys.delete(kid);
    }
  }

  async stop(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    await this.#watcher?.cancel().catch(() => undefined);
    this.#watcher = undefined;
  }
}
