// Pure cores of application connections: interface declarations, add/remove/instance-delete
// checks and their messages, the status machine and its events, the link pool, env names.
import test from 'ava';
import { validateAppnetInterfaces } from '../control/instances/appnet-interfaces.ts';
import type { InstanceRecord } from '../control/instances/instance.ts';
import { hostsEntries, instanceEnv, outboundEnvName, outboundHostname } from '../control/connections/env.ts';
import { allocateLinkPair, exhaustedReason, pairAt, pairIndexOf, parseLinkPool } from '../control/connections/link-pool.ts';
import type { ConnectionRecord } from '../control/connections/model.ts';
import { STATUS_TABLE, applyStatus } from '../control/connections/status.ts';
import { checkAdd, checkInstanceDelete, checkRemove, validateConnectionRequest } from '../control/connections/validate.ts';
import { parseInbound, parseOutbound } from '../control/cli/commands/instance.ts';

const SRC = '1234abcd-0000-4000-8000-000000000001';
const SINK = '5678ef01-0000-4000-8000-000000000002';

function instance(uuid: string, name: string, extra: Partial<InstanceRecord> = {}): InstanceRecord {
  return { uuid, name, namespace: 'alpha', host: 'h1', netns: 'n', interfaces: [], metadata: {}, createdAt: 1, version: 1, ...extra };
}
const source = instance(SRC, 'vm1', { outbounds: [{ name: 'db', required: true }, { name: 'cache', required: false }] });
const sink = instance(SINK, 'sink', { inbounds: [{ name: 'in', port: 5432, protocol: 'tcp' }] });

function connection(extra: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    connection_id: 'c1', namespace: 'alpha', target_namespace: 'alpha',
    source_instance_id: SRC, source_instance_name: 'vm1', outbound_name: 'db', outbound_required: true,
    target_instance_id: SINK, target_instance_name: 'sink', inbound_name: 'in', inbound_port: 5432, inbound_protocol: 'tcp',
    status: 'WAITING', reason: null, link: { outbound_address: '198.18.0.0', inbound_address: '198.18.0.1', prefix_len: 31 }, vni: 7,
    created_at: 1, status_updated_at: 1, version: 1, ...extra,
  };
}
const request = { source_instance_id: SRC, outbound_name: 'db', target_instance_id: SINK, inbound_name: 'in' };

test('interface declarations: defaults, each field named in its error, names unique ignoring case and -/_', (t) => {
  t.deepEqual(validateAppnetInterfaces([{ name: 'web', port: 80 }], [{ name: 'db' }]), {
    inbounds: [{ name: 'web', port: 80, protocol: 'tcp' }],
    outbounds: [{ name: 'db', required: false }],
  });
  t.deepEqual(validateAppnetInterfaces(undefined, undefined), { inbounds: [], outbounds: [] });
  const bad: [unknown, unknown, RegExp][] = [
    ['x', [], /^inbounds must be an array/],
    [[{ name: 'web', port: 0 }], [], /^inbounds\.0\.port must be an integer 1\.\.65535/],
    [[{ name: 'web', port: 80, protocol: 'sctp' }], [], /^inbounds\.0\.protocol must be "tcp" or "udp", got "sctp"/],
    [[{ name: '9web', port: 80 }], [], /^inbounds\.0\.name "9web" is invalid/],
    [[], [{ name: 'db', required: 'yes' }], /^outbounds\.0\.required must be true or false/],
    [[], [{ name: 'db', colour: 1 }], /^unknown parameter "colour" in outbounds\.0/],
    [[], [{}], /^outbounds\.0\.name is required/],
    [[{ name: 'db', port: 1 }], [{ name: 'DB' }], /^Inbound\/outbound name defined twice: outbounds\.0\.name "DB" is the same name as inbounds\.0\.name/],
    [[], [{ name: 'db-main' }, { name: 'db_main' }], /^Inbound\/outbound name defined twice: outbounds\.1\.name/],
  ];
  for (const [inb, outb, message] of bad) t.throws(() => validateAppnetInterfaces(inb, outb), { message }, String(message));
});

test('add checks in order, with the reference messages', (t) => {
  for (const field of ['source_instance_id', 'outbound_name', 'target_instance_id', 'inbound_name']) {
    t.throws(() => validateConnectionRequest({ ...request, [field]: '' }), { message: `${field} cannot be empty` });
    t.throws(() => validateConnectionRequest({ ...request, [field]: undefined }), { message: `${field} cannot be empty` });
  }
  t.deepEqual(validateConnectionRequest(request), request);
  const err = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e as { status: number; message: string };
    }
    throw new Error('did not throw');
  };
  let e = err(() => checkAdd({ request: { ...request, outbound_name: 'nope' }, source, target: sink, holder: undefined }));
  t.is(e.status, 400);
  t.regex(e.message, /^outbound_name does not exist: instance vm1 \(.*\) declares no outbound "nope" \(its outbounds: db, cache\)$/);
  e = err(() => checkAdd({ request: { ...request, inbound_name: 'nope' }, source, target: sink, holder: undefined }));
  t.regex(e.message, /^inbound_name does not exist: .*\(its inbounds: in\)$/);
  const both = instance(SRC, 'vm1', { outbounds: source.outbounds, inbounds: sink.inbounds });
  e = err(() => checkAdd({ request, source: both, target: both, holder: undefined }));
  t.is(e.status, 400);
  t.regex(e.message, /^Can not create a connection between an inbound and an outbound of the same instance: vm1/);
  // Two instances on one host are not "the same instance".
  t.deepEqual(checkAdd({ request, source, target: { ...sink, host: source.host }, holder: undefined }).inbound.port, 5432);
  e = err(() => checkAdd({ request, source, target: sink, holder: connection() }));
  t.is(e.status, 409);
  t.is(e.message, 'connection already exists: vm1/db -> sink/in (connection c1, WAITING)');
  e = err(() => checkAdd({ request, source, target: sink, holder: connection({ target_instance_name: 'other', target_instance_id: 'o' }) }));
  t.is(e.status, 409);
  t.regex(e.message, /^source instance already have its outbound interface connected: vm1\/db -> other\/in/);
});

test('removal of a required outbound needs force; instance delete needs force only for inbound connections', (t) => {
  const required = connection();
  t.throws(() => checkRemove(required, false), {
    message: /^A connection in which the outbound is required cannot be deleted; .* user confirmation is required: vm1\/db -> sink\/in/,
  });
  t.notThrows(() => checkRemove(required, true));
  t.notThrows(() => checkRemove(connection({ outbound_required: false }), false));
  t.throws(() => checkInstanceDelete(sink, [required], false), {
    message: /^can not delete the instance, it has inbound connections\. User confirmation required: sink .* has 1 \(vm1\/db -> sink\/in\)/,
  });
  t.notThrows(() => checkInstanceDelete(sink, [required], true));
  t.notThrows(() => checkInstanceDelete(source, [required], false), 'outbound connections end without force');
  t.notThrows(() => checkInstanceDelete(sink, [connection({ status: 'TERMINATED' })], false));
});

test('status machine: every change is an event, late reports are ignored, illegal moves are 409', (t) => {
  const c = connection();
  const up = applyStatus(c, { type: 'link-up' }, 2000);
  if (up.kind !== 'changed') return t.fail();
  t.like(up.record, { status: 'ESTABLISHED', reason: null, status_updated_at: 2000 });
  t.like(up.event, { connection_id: 'c1', from: 'WAITING', to: 'ESTABLISHED', timestamp: 2, message: 'status changed to ESTABLISHED' });
  t.is(applyStatus(up.record, { type: 'link-up' }, 3000).kind, 'unchanged');
  const down = applyStatus(up.record, { type: 'link-down', reason: 'host h2 went away' }, 3000);
  if (down.kind !== 'changed') return t.fail();
  t.like(down.record, { status: 'WAITING', reason: 'host h2 went away' });
  t.is(down.event.message, 'status changed to WAITING: host h2 went away');
  t.like(applyStatus(down.record, { type: 'link-down', reason: 'still away' }, 3500), { kind: 'reason', record: { reason: 'still away' } });
  const failed = applyStatus(c, { type: 'setup-failed', reason: 'no free link address' }, 4000);
  if (failed.kind !== 'changed') return t.fail();
  t.like(failed.record, { status: 'ERROR', reason: 'no free link address' });
  t.throws(() => applyStatus(failed.record, { type: 'link-up' }, 5000), { message: /is ERROR: link-up is not allowed/ });
  const term = applyStatus(failed.record, { type: 'remove', reason: 'removed by request' }, 5000);
  if (term.kind !== 'changed') return t.fail();
  t.like(term.event, { from: 'ERROR', to: 'TERMINATED' });
  for (const type of ['link-up', 'link-down', 'setup-failed'] as const) {
    t.is(applyStatus(term.record, type === 'link-up' ? { type } : { type, reason: 'late' }, 6000).kind, 'unchanged', type);
  }
  t.is(applyStatus(term.record, { type: 'remove', reason: 'again' }, 6000).kind, 'unchanged');
  t.throws(() => applyStatus(c, { type: 'torn-down' }, 6000), { message: /only a TERMINATED connection can be finished/ });
  const gone = applyStatus(term.record, { type: 'torn-down' }, 7000);
  t.like(gone, { kind: 'deleted', event: { from: 'TERMINATED', to: null, message: 'deleted' } });
  // The table covers every status and input.
  t.deepEqual(Object.keys(STATUS_TABLE).sort(), ['ERROR', 'ESTABLISHED', 'TERMINATED', 'WAITING']);
});

test('link pool: /31 pairs, lowest free first, exhaustion gives a reason instead of a pair', (t) => {
  const pool = parseLinkPool('198.18.0.0/30');
  t.deepEqual(allocateLinkPair(pool, new Set()), { index: 0, outbound_address: '198.18.0.0', inbound_address: '198.18.0.1', prefix_len: 31 });
  t.like(allocateLinkPair(pool, new Set([0])), { index: 1, outbound_address: '198.18.0.2', inbound_address: '198.18.0.3' });
  t.is(allocateLinkPair(pool, new Set([0, 1])), null);
  t.regex(exhaustedReason(pool), /^no free link address: the link pool 198\.18\.0\.0\/30 has all 2 address pairs in use/);
  t.is(pairIndexOf(pool, '198.18.0.3'), 1);
  t.is(pairIndexOf(pool, '198.18.0.4'), -1);
  const big = parseLinkPool('198.19.0.0/16');
  t.like(pairAt(big, 32767), { outbound_address: '198.19.255.254', inbound_address: '198.19.255.255' });
  t.throws(() => parseLinkPool('198.19.0.0/32'), { message: /must have a prefix length \/8\.\.\/31/ });
  t.throws(() => parseLinkPool('198.19.0.1/16'), { message: /host bits set/ });
});

test('env names: APPNET_OUTBOUND_<NAME>, a stable resolvable name, the address only once connected', (t) => {
  t.is(outboundEnvName('db-main'), 'APPNET_OUTBOUND_DB_MAIN');
  t.is(outboundEnvName('Cache_2'), 'APPNET_OUTBOUND_CACHE_2');
  t.is(outboundHostname(SRC, 'DB_main'), 'db-main.1234abcd.appnet');
  const env = instanceEnv(source, [connection()]);
  t.deepEqual(env.map((e) => [e.name, e.value, e.address, e.port]), [
    ['APPNET_OUTBOUND_DB', 'db.1234abcd.appnet', '198.18.0.1', 5432],
    ['APPNET_OUTBOUND_CACHE', 'cache.1234abcd.appnet', null, null],
  ]);
  // A re-established connection keeps its record, so the same name and address come back.
  t.deepEqual(instanceEnv(source, [connection({ status: 'ESTABLISHED' })])[0].address, '198.18.0.1');
  t.deepEqual(hostsEntries(source, [connection()]), ['198.18.0.1 db.1234abcd.appnet']);
  t.deepEqual(instanceEnv(source, [connection({ status: 'TERMINATED' })])[0].address, null, 'a terminating connection no longer resolves');
});

test('CLI parsing of --inbound and --outbound', (t) => {
  t.deepEqual(parseInbound('web:8080'), { name: 'web', port: 8080 });
  t.deepEqual(parseInbound('dns:53/udp'), { name: 'dns', port: 53, protocol: 'udp' });
  t.throws(() => parseInbound('web'), { message: /expected NAME:PORT/ });
  t.deepEqual(parseOutbound('db:required'), { name: 'db', required: true });
  t.deepEqual(parseOutbound('cache'), { name: 'cache', required: false });
  t.throws(() => parseOutbound('db:maybe'), { message: /expected NAME\[:required\]/ });
});
