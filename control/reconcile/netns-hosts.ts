// The resolvable name of a connected outbound: `/etc/netns/<instance netns>/hosts`, which
// `ip netns exec` (and anything that enters the namespace the same way) bind-mounts over /etc/hosts,
// so `getent hosts $APPNET_OUTBOUND_DB` inside the source instance answers the connection's inbound
// link address. The name (connections/env.ts) depends only on the instance and the outbound, the
// address only on the connection record, so both survive re-establishment and daemon restarts.
//
// A file this daemon writes starts with a marker naming its host; a daemon only ever changes or
// removes files with its own marker. On its first pass it adopts the ones a previous run left in the
// namespaces of instances the store places on this host (only those: another appnetd on the machine,
// for another store, may use the same host name), so a connection removed while it was down loses its
// name once it is back.
import { mkdir, readFile, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { hostsEntries } from '../connections/env.ts';
import type { ConnectionRecord } from '../connections/model.ts';
import { isRealisable } from '../connections/realise.ts';
import type { DesiredState } from './plan.ts';

export const ETC_NETNS = '/etc/netns';
const MARKER = /^# written by appnetd on host (\S+):/;
const NETNS_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** The whole file: marker, localhost, one `<inbound address> <name>` line per connected outbound. */
export function hostsFileText(host: string, entries: readonly string[]): string {
  return [
    `# written by appnetd on host ${host}: names of this instance's connected outbounds (docs/connections.md)`,
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    ...entries,
    '',
  ].join('\n');
}

/**
 * Pure: netns -> file text, for every instance on `host` that is the source of a realisable
 * connection. Instances whose netns is a path (not a name under /run/netns) get no file.
 */
export function desiredHostsFiles(host: string, state: DesiredState): Map<string, string> {
  const bySource = new Map<string, ConnectionRecord[]>();
  for (const c of state.connections?.values() ?? []) {
    if (!isRealisable(c) || state.instances.get(c.source_instance_id)?.host !== host) continue;
    const list = bySource.get(c.source_instance_id) ?? [];
    list.push(c);
    bySource.set(c.source_instance_id, list);
  }
  const files = new Map<string, string>();
  for (const [uuid, conns] of bySource) {
    const inst = state.instances.get(uuid)!;
    if (!NETNS_NAME.test(inst.netns)) continue;
    const entries = hostsEntries(inst, conns);
    if (entries.length > 0) files.set(inst.netns, hostsFileText(host, entries));
  }
  return files;
}

/** The namespaces of the instances placed on `host`: the only ones whose files a restarted daemon adopts. */
export function localNetns(host: string, state: DesiredState): Set<string> {
  const out = new Set<string>();
  for (const uuid of state.instancesOnHost(host)) {
    const ns = state.instances.get(uuid)?.netns;
    if (ns !== undefined && NETNS_NAME.test(ns)) out.add(ns);
  }
  return out;
}

/** Writes and removes this host's hosts files so that they match the desired ones. */
export class NetnsHosts {
  readonly #written = new Map<string, string>(); // netns -> text on disk
  #adopted = false;

  constructor(private readonly o: { host: string; log: Logger; root?: string }) {}

  get #root(): string { return this.o.root ?? ETC_NETNS; }

  /** `local`: the namespaces of this host's instances (localNetns), where files of a previous run are adopted. */
  async apply(files: ReadonlyMap<string, string>, local: ReadonlySet<string> = new Set(files.keys())): Promise<void> {
    if (!this.#adopted) {
      await this.#adopt(local);
      this.#adopted = true;
    }
    for (const [ns, text] of files) {
      if (this.#written.get(ns) === text) continue;
      try {
        const dir = path.join(this.#root, ns);
        await mkdir(dir, { recursive: true });
        const tmp = path.join(dir, `.hosts.appnetd-${process.pid}`);
        await writeFile(tmp, text, { mode: 0o644 });
        await rename(tmp, path.join(dir, 'hosts')); // a reader sees the old file or the new one
        this.#written.set(ns, text);
        this.o.log.info({ netns: ns }, 'instance hosts file written');
      } catch (e) {
        this.o.log.error({ err: e, netns: ns }, 'instance hosts file not written');
      }
    }
    for (const ns of [...this.#written.keys()]) {
      if (!files.has(ns)) await this.#remove(ns);
    }
  }

  /** Removes every file this daemon wrote (graceful shutdown: its ports are gone too). */
  async close(): Promise<void> {
    for (const ns of [...this.#written.keys()]) await this.#remove(ns);
  }

  /** Files a previous run of this host left behind become this run's to keep or remove. */
  async #adopt(local: ReadonlySet<string>): Promise<void> {
    for (const ns of local) {
      const text = await readFile(path.join(this.#root, ns, 'hosts'), 'utf8').catch(() => undefined);
      if (text !== undefined && MARKER.exec(text)?.[1] === this.o.host) this.#written.set(ns, text);
    }
  }

  async #remove(ns: string): Promise<void> {
    const file = path.join(this.#root, ns, 'hosts');
    const text = await readFile(file, 'utf8').catch(() => undefined);
    // Someone else's file now (an operator, or another host's daemon after a move): leave it.
    if (text !== undefined && MARKER.exec(text)?.[1] === this.o.host) await unlink(file).catch(() => undefined);
    await rmdir(path.join(this.#root, ns)).catch(() => undefined); // only if now empty
    this.#written.delete(ns);
    this.o.log.info({ netns: ns }, 'instance hosts file removed');
  }
}
