// The config shipped for operators (deploy/appnetd.json) parses, and the API address a host advertises
// to the others is one they can reach.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { ConfigError, DEFAULT_EVENTS, advertisedApiUrl, parseDaemonConfig } from '../control/daemon/config.ts';

const base = { host: 'h1', underlay: { address: '198.18.0.11' } };

test('deploy/appnetd.json is a valid config for a host of a cluster', (t) => {
  const cfg = parseDaemonConfig(JSON.parse(readFileSync(new URL('../deploy/appnetd.json', import.meta.url), 'utf8')));
  t.regex(cfg.store!, /^etcd:\/\//);
  t.is(cfg.api.address, cfg.underlay.address);
  t.is(advertisedApiUrl(cfg), `https://${cfg.underlay.address}:7878`);
  t.deepEqual(cfg.events, DEFAULT_EVENTS);
});

test('the advertised API: explicit, else the underlay address behind 0.0.0.0, else the listen address', (t) => {
  t.is(advertisedApiUrl(parseDaemonConfig({ ...base, api: { address: '0.0.0.0', port: 9000 } })), 'https://198.18.0.11:9000');
  t.is(advertisedApiUrl(parseDaemonConfig({ ...base, api: { address: '0.0.0.0', advertise: '198.18.5.5' } })), 'https://198.18.5.5:7878');
  t.is(advertisedApiUrl(parseDaemonConfig({ ...base, api: { address: '198.18.0.11' } })), 'https://198.18.0.11:7878');
  t.is(advertisedApiUrl(parseDaemonConfig(base)), 'http://127.0.0.1:7878');
  t.throws(() => parseDaemonConfig({ ...base, api: { advertise: 'host-b' } }), { instanceOf: ConfigError, message: /api\.advertise/ });
});

test('event pruning limits are validated with the field named', (t) => {
  t.deepEqual(parseDaemonConfig({ ...base, events: { maxPerObject: 10 } }).events, { ...DEFAULT_EVENTS, maxPerObject: 10 });
  t.throws(() => parseDaemonConfig({ ...base, events: { maxPerObject: 0 } }), { message: /events\.maxPerObject/ });
  t.throws(() => parseDaemonConfig({ ...base, events: { keep: 1 } }), { message: /events\.keep: unknown field/ });
});

test('offloads: all on by default but tapGroUdp, which is opt-in; a wrong value or name is named', (t) => {
  t.deepEqual(parseDaemonConfig(base).offloads, { udpGso: true, udpGro: true, tapOffload: true, tapGro: true, tapGroUdp: false, uplinkOffload: true });
  t.is(parseDaemonConfig({ ...base, offloads: { tapGroUdp: true } }).offloads.tapGroUdp, true);
  t.is(parseDaemonConfig({ ...base, offloads: { tapGro: false } }).offloads.tapGro, false);
  t.throws(() => parseDaemonConfig({ ...base, offloads: { tapGroUdp: 'yes' } }), { instanceOf: ConfigError, message: /offloads\.tapGroUdp: must be true or false/ });
  t.throws(() => parseDaemonConfig({ ...base, offloads: { udpGroTap: true } }), { instanceOf: ConfigError, message: /offloads\.udpGroTap: unknown offload/ });
});
