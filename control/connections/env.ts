// How an outbound instance finds its peer (reference A7.1, renamed from NALEJ_ to APPNET_):
//
//   APPNET_OUTBOUND_<NAME>=<outbound>.<inst8>.appnet
//
// <NAME> is the outbound's name uppercased with every non-alphanumeric as '_'; the value is a
// name that resolves, inside the source instance, to the connection's inbound link address.
// <outbound> is the name lowercased with '_' as '-' (a DNS label), <inst8> the first 8 hex digits
// of the instance's UUID (as its default netns). Both depend only on the instance and the
// outbound, never on the connection, so they are known before the outbound is connected and stay
// the same across re-establishment and even across a remove and a new add; only the address
// behind the name can change, and only with a new connection. The application dials
// `$APPNET_OUTBOUND_<NAME>:<inbound port>`.
//
// The name needs to be unique only inside its instance (each instance's resolver answers for its
// own outbounds), which the instance's interface-name rule already guarantees.

import type { InstanceRecord } from '../instances/instance.ts';
import type { ConnectionRecord, ConnectionStatus } from './model.ts';

export const ENV_PREFIX = 'APPNET_OUTBOUND_';
export const NAME_SUFFIX = 'appnet';

export function outboundEnvName(outbound: string): string {
  return ENV_PREFIX + outbound.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

export function outboundHostname(instanceUuid: string, outbound: string): string {
  const label = outbound.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  return `${label}.${instanceUuid.replace(/-/g, '').slice(0, 8).toLowerCase()}.${NAME_SUFFIX}`;
}

/** One row of `appnet instance env`: the variable, and what its name resolves to now. */
export interface EnvEntry {
  name: string;
  value: string;
  outbound_name: string;
  required: boolean;
  /** The inbound link address the name resolves to; null while the outbound is not connected. */
  address: string | null;
  port: number | null;
  protocol: string | null;
  connection_id: string | null;
  status: ConnectionStatus | null;
}

/** The environment of `instance`, one entry per declared outbound, in declaration order. */
export function instanceEnv(instance: InstanceRecord, connections: readonly ConnectionRecord[]): EnvEntry[] {
  return (instance.outbounds ?? []).map((o) => {
    const c = connections.find((x) => x.source_instance_id === instance.uuid && x.outbound_name === o.name && x.status !== 'TERMINATED');
    return {
      name: outboundEnvName(o.name),
      value: outboundHostname(instance.uuid, o.name),
      outbound_name: o.name,
      required: o.required,
      address: c?.link?.inbound_address ?? null,
      port: c?.inbound_port ?? null,
      protocol: c?.inbound_protocol ?? null,
      connection_id: c?.connection_id ?? null,
      status: c?.status ?? null,
    };
  });
}

/** `/etc/hosts` lines for the instance's connected outbounds (the integrator's resolver may use them). */
export function hostsEntries(instance: InstanceRecord, connections: readonly ConnectionRecord[]): string[] {
  return instanceEnv(instance, connections)
    .filter((e) => e.address !== null)
    .map((e) => `${e.address} ${e.value}`);
}
