// Namespaces and their keys, as Shaken Fist has them: a namespace owns networks and instances;
// each of its keys (a name and a secret) lets a client obtain a token for it with POST /auth.
// Only hashes of keys are stored (key-hash.ts). Writes are compare-and-swap on the record's mod
// revision, so two daemons adding keys at once both land or one gets a 409.
//
// The namespaces of the config's static tokens, and `system`, exist without a record: they cannot
// be deleted here and hold no keys until one is added (which creates the record).
import { BadRequest, Conflict, Forbidden, NotFound, quote } from '../errors.ts';
import type { Store } from '../store/store.ts';
import { type AuthState, NAMESPACES_PREFIX, type NamespaceRecord } from './auth-state.ts';
import { hashKey, verifyKey } from './key-hash.ts';

export const SYSTEM_NAMESPACE = 'system';
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** One namespace as GET /auth/namespaces lists it (never a hash). */
export interface NamespaceView {
  name: string;
  key_names: string[];
  /** True for system and the config's static-token namespaces: they exist without a record. */
  builtin: boolean;
}

export function checkName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new BadRequest(`${field} must be 1-63 characters of letters, digits, '_', '.' or '-' (starting with a letter or digit), got ${quote(value ?? null)}`, { reason: field });
  }
  return value;
}

export function checkKey(value: unknown): string {
  if (typeof value !== 'string' || value.length < 8 || value.length > 1024) {
    throw new BadRequest('key must be a string of 8-1024 characters', { reason: 'key' });
  }
  return value;
}

export class Namespaces {
  constructor(
    private readonly store: Store,
    private readonly state: AuthState,
    /** Namespaces that exist without a record: system and those of static tokens. */
    private readonly builtin: ReadonlySet<string>,
    /** True when the namespace still owns live networks or instances (deletion refused). */
    private readonly inUse: (namespace: string) => boolean = () => false,
  ) {}

  has(name: string): boolean {
    return this.builtin.has(name) || this.state.namespaces.has(name);
  }

  /** Every known name: for the repositories' "namespace not found" checks. */
  names(): Set<string> {
    return new Set([...this.builtin, ...this.state.namespaces.keys()]);
  }

  list(): NamespaceView[] {
    const names = [...this.names()].sort();
    return names.map((name) => ({
      name,
      key_names: Object.keys(this.state.namespaces.get(name)?.keys ?? {}).sort(),
      builtin: this.builtin.has(name),
    }));
  }

  get(name: string): NamespaceView {
    if (!this.has(name)) throw new NotFound(`namespace ${quote(name)} not found`, { reason: 'namespace' });
    return this.list().find((n) => n.name === name)!;
  }

  /** Creates the namespace if absent and, with a key, adds or replaces that key. */
  async put(name: string, key?: { name: string; secret: string }): Promise<NamespaceView> {
    const hash = key ? await hashKey(key.secret) : undefined;
    const path = NAMESPACES_PREFIX + name;
    for (let attempt = 0; attempt < 5; attempt++) {
      const kv = await this.store.get(path);
      const rec: NamespaceRecord = kv ? (JSON.parse(kv.value) as NamespaceRecord) : { name, keys: {}, created_at: new Date().toISOString() };
      if (key && hash) rec.keys[key.name] = hash;
      const done = await this.store.txn({
        compare: [{ key: path, target: 'modRevision', op: '==', value: kv?.modRevision ?? 0 }],
        success: [{ type: 'put', key: path, value: JSON.stringify(rec) }],
      });
      if (done.succeeded) {
        await this.state.refresh();
        return this.get(name);
      }
    }
    throw new Conflict(`namespace ${quote(name)} changed under five attempts to write it; try again`, { reason: 'race' });
  }

  async delete(name: string): Promise<void> {
    if (this.builtin.has(name)) throw new Forbidden(`namespace ${quote(name)} is built in (system or a static token's) and cannot be deleted`, { reason: 'builtin' });
    if (!this.state.namespaces.has(name)) throw new NotFound(`namespace ${quote(name)} not found`, { reason: 'namespace' });
    if (this.inUse(name)) throw new Forbidden(`namespace ${quote(name)} still owns networks or instances: delete them first`, { reason: 'in-use' });
    await this.store.delete(NAMESPACES_PREFIX + name);
    await this.state.refresh();
  }

  async deleteKey(name: string, keyName: string): Promise<void> {
    const path = NAMESPACES_PREFIX + name;
    for (let attempt = 0; attempt < 5; attempt++) {
      const kv = await this.store.get(path);
      if (!kv) throw new NotFound(`namespace ${quote(name)} has no keys`, { reason: 'namespace' });
      const rec = JSON.parse(kv.value) as NamespaceRecord;
      if (rec.keys[keyName] === undefined) throw new NotFound(`namespace ${quote(name)} has no key ${quote(keyName)}`, { reason: 'key' });
      delete rec.keys[keyName];
      const done = await this.store.txn({
        compare: [{ key: path, target: 'modRevision', op: '==', value: kv.modRevision }],
        success: [{ type: 'put', key: path, value: JSON.stringify(rec) }],
      });
      if (done.succeeded) {
        await this.state.refresh();
        return;
      }
    }
    throw new Conflict(`namespace ${quote(name)} changed under five attempts to write it; try again`, { reason: 'race' });
  }

  /** The name of the key of `name` that `secret` matches, or undefined. */
  async authenticate(name: string, secret: string): Promise<string | undefined> {
    const rec = this.state.namespaces.get(name);
    if (!rec) return undefined;
    for (const [keyName, hash] of Object.entries(rec.keys)) {
      if (await verifyKey(hash, secret)) return keyName;
    }
    return undefined;
  }

  /** True while the key a token was issued for still exists (deleting a key revokes its tokens). */
  keyExists(name: string, keyName: string): boolean {
    return this.state.namespaces.get(name)?.keys[keyName] !== undefined;
  }
}
