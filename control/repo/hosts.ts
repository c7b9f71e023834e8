// The host registry: each appnetd registers its host under a lease and keeps it alive, so the
// hosts the store lists are the ones whose daemon is running (a dead daemon's record expires).
//
// A restarted daemon may find its own previous record still there (kill -9 leaves it until the
// lease runs out). It takes the record over when the record carries its own public key (a host is its
// key: hosts on other machines share no pid space or hostname to tell by), or, for a host without
// links, when the previous owner was on this machine and its process is gone; otherwise it refuses,
// naming who holds the name.
import os from 'node:os';
import { Conflict } from '../errors.ts';
import { LeaseNotFoundError, type LeaseId, type Store } from '../store/store.ts';
import { HOSTS_PREFIX } from './keys.ts';


export interface HostRecord {
  name: string;
  underlay_address: string;
  /** The host's public key, once encrypted links exist. */
  public_key?: string;
  /** Where this host's appnetd serves the REST API. */
  api?: string;
  /**
   * PEM of the API's certificate (then its CA) when `api` is https: other hosts pin exactly this
   * certificate for requests to this host and accept it as this host's client certificate
   * (control/api/peer-client.ts).
   */
  certificate?: string;
  /** The host has an uplink and can serve NAT (control/services/nat-policy.ts). */
  nat_uplink?: boolean;
  machine: string;
  pid: number;
  started_at: string;
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export class HostRegistry {
  #lease: LeaseId | undefined;
  #timer: NodeJS.Timeout | undefined;
  #record: HostRecord | undefined;

  constructor(private readonly store: Store, private readonly ttlSeconds = 10) {}

  /** Registers this host and keeps its lease alive until close(). */
  async register(rec: Omit<HostRecord, 'machine' | 'pid' | 'started_at'>): Promise<HostRecord> {
    const record: HostRecord = { ...rec, machine: os.hostname(), pid: process.pid, started_at: new Date().toISOString() };
    const key = HOSTS_PREFIX + record.name;
    const existing = await this.store.get(key);
    if (existing) {
      const prev = JSON.parse(existing.value) as HostRecord;
      const ours = prev.public_key !== undefined
        ? prev.public_key === record.public_key
        : prev.machine === record.machine && (prev.pid === process.pid || processGone(prev.pid));
      if (!ours) {
        throw new Conflict(
          `host ${record.name} is already registered by pid ${prev.pid} on ${prev.machine} since ${prev.started_at}; ` +
          `stop that appnetd, pick another host name, or wait ${this.ttlSeconds} s for its lease to expire`,
        );
      }
    }
    this.#lease = await this.store.grantLease(this.ttlSeconds);
    await this.store.put(key, JSON.stringify(record), { lease: this.#lease });
    this.#record = record;
    this.#timer = setInterval(() => void this.#keepAlive(), Math.max(1000, (this.ttlSeconds * 1000) / 3));
    return record;
  }

  async #keepAlive(): Promise<void> {
    if (!this.#lease || !this.#record) return;
    try {
      await this.store.keepAlive(this.#lease);
    } catch (e) {
      if (!(e instanceof LeaseNotFoundError)) return; // a busy store: try again next tick
      // The lease expired (the process was stopped for longer than the TTL): register again.
      this.#lease = await this.store.grantLease(this.ttlSeconds);
      await this.store.put(HOSTS_PREFIX + this.#record.name, JSON.stringify(this.#record), { lease: this.#lease });
    }
  }

  /**
   * The lease this host's record lives on, for other keys that must vanish with the daemon (the
   * connection endpoint reports). It changes when the lease expired and the host registered again:
   * keys put on the old one are gone, so a holder compares and puts them again.
   */
  get lease(): LeaseId | undefined {
    return this.#lease;
  }

  async list(): Promise<HostRecord[]> {
    const { kvs } = await this.store.range(HOSTS_PREFIX);
    return kvs.map((kv) => JSON.parse(kv.value) as HostRecord);
  }

  /** Removes this host's record at once (graceful shutdown). */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#lease) await this.store.revokeLease(this.#lease).catch(() => undefined);
    this.#lease = undefined;
  }
}
