// Opens the store an operator names with a URL:
//   sqlite:/var/lib/appnet/store.db, sqlite:///var/lib/appnet/store.db, or a bare path → SqliteStore (one machine)
//   etcd://host:2379[,host:2379...]                                            → EtcdStore (many machines)
//   etcds://host:2379[,...]: the same over TLS (the `etcd` options give the CA, client certificate and key)

import { openEtcdStore } from './etcd-store.ts';
import { SqliteStore } from './sqlite-store.ts';
import type { SqliteStoreOptions } from './sqlite-store.ts';
import { InvalidArgumentError } from './store.ts';
import type { Store } from './store.ts';

export * from './store.ts';
export { SqliteStore } from './sqlite-store.ts';
export { EtcdStore } from './etcd-store.ts';
export type { SqliteStoreOptions } from './sqlite-store.ts';

/** How appnetd reaches etcd: TLS files (PEM) and etcd's user/password authentication. */
export interface EtcdConnectOptions {
  ca?: string;
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
}

export interface OpenStoreOptions {
  sqlite?: SqliteStoreOptions;
  etcd?: EtcdConnectOptions;
}

export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'etcd'; endpoints: string[]; tls: boolean };

const ENDPOINT = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

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
  if (scheme === 'etcd' || scheme === 'etcds') {
    if (!url.slice(scheme.length).startsWith('://')) throw new InvalidArgumentError(`store URL ${url}: write ${scheme}://host:port[,host:port...]`);
    const endpoints = url.slice(scheme.length + 3).replace(/\/+$/, '').split(',').map((e) => e.trim());
    for (const e of endpoints) {
      if (!ENDPOINT.test(e)) {
        throw new InvalidArgumentError(`store URL ${url}: endpoint ${JSON.stringify(e)} is not host:port; list every member, e.g. ${scheme}://198.18.0.201:2379,198.18.0.202:2379`);
      }
    }
    return { kind: 'etcd', endpoints, tls: scheme === 'etcds' };
  }
  throw new InvalidArgumentError(
    `store URL ${url} has unknown scheme ${scheme}:; use sqlite:/path/to/store.db (one machine) or etcd://host:2379 (a cluster)`,
  );
}

/** Opens the store at `url`; see parseStoreUrl for the forms it accepts. */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const location = parseStoreUrl(url);
  if (location.kind === 'etcd') {
    const e = options.etcd ?? {};
    if ((e.ca || e.cert || e.key) && !location.tls) {
      throw new InvalidArgumentError(`store URL ${url}: etcd TLS files are given, so write etcds:// (TLS) instead of etcd://`);
    }
    if ((e.username === undefined) !== (e.password === undefined)) {
      throw new InvalidArgumentError('etcd authentication needs both etcd.username and etcd.password');
    }
    return openEtcdStore({
      endpoints: location.endpoints,
      ...(location.tls ? { tls: { ca: e.ca, cert: e.cert, key: e.key } } : {}),
      ...(e.username !== undefined ? { auth: { username: e.username, password: e.password! } } : {}),
    });
  }
  return new SqliteStore(location.path, options.sqlite);
}
