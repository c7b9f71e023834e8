// Opens the store an operator names with a URL:
//   sqlite:/var/lib/appnet/store.db, sqlite:///var/lib/appnet/store.db, or a bare path → SqliteStore
//   etcd://host:2379[,host:2379...]                                            → not implemented yet

import { SqliteStore } from './sqlite-store.ts';
import type { SqliteStoreOptions } from './sqlite-store.ts';
import { InvalidArgumentError, NotImplementedError } from './store.ts';
import type { Store } from './store.ts';

export * from './store.ts';
export { SqliteStore } from './sqlite-store.ts';
export type { SqliteStoreOptions } from './sqlite-store.ts';

export interface OpenStoreOptions {
  sqlite?: SqliteStoreOptions;
}

export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'etcd'; endpoints: string[] };

/** Parses a store URL without opening anything. */
export function parseStoreUrl(url: string): StoreLocation {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new InvalidArgumentError(`store URL must be a non-empty string such as sqlite:/var/lib/appnet/store.db, got ${JSON.stringify(url)}`);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'sqlite', path: url };
  if (scheme === 'sqlite') {
    let path = url.slice('sqlite:'.length);
    if (path.startsWith('//')) {
      // sqlite:///abs/path has an empty authority; sqlite://host/... names a host, which SQLite cannot reach.
      if (!path.startsWith('///')) {
        throw new InvalidArgumentError(`store URL ${url} names a host; SQLite is a local file: use sqlite:/path/to/store.db`);
      }
      path = path.slice(2);
    }
    if (path === '') throw new InvalidArgumentError(`store URL ${url} has no file path; use sqlite:/path/to/store.db`);
    return { kind: 'sqlite', path };
  }
  if (scheme === 'etcd' || scheme === 'etcd+http' || scheme === 'etcd+https') {
    const endpoints = url.slice(url.indexOf('://') + 3).split(',').filter((e) => e !== '');
    return { kind: 'etcd', endpoints };
  }
  throw new InvalidArgumentError(
    `store URL ${url} has unknown scheme ${scheme}:; use sqlite:/path/to/store.db (one machine) or etcd://host:2379 (a cluster)`,
  );
}

/** Opens the store at `url`; see parseStoreUrl for the forms it accepts. */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const location = parseStoreUrl(url);
  if (location.kind === 'etcd') {
    throw new NotImplementedError(
      `the etcd store (${url}) is not implemented yet; use sqlite:/path/to/store.db, shared by the appnetd processes of one machine`,
    );
  }
  return new SqliteStore(location.path, options.sqlite);
}
