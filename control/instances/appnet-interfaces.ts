// The application-network interfaces an instance declares (Nalej's inbound/outbound "net
// interfaces"): an inbound is a service port other instances may be connected to, an outbound is
// a named dependency the instance dials. Connections (control/connections/) join one outbound to
// one inbound. Pure validation of the `inbounds` / `outbounds` fields of POST /instances.
//
// Rules:
//   name      1..63 of [A-Za-z0-9_-], starting with a letter, ending with a letter or digit, so it
//             maps to an environment variable suffix and to a DNS label without escaping
//   uniqueness names are unique across the inbound and outbound lists of one instance (as Nalej's
//             "Inbound/outbound name defined twice"), compared after that mapping: `db-main` and
//             `DB_main` would give the same APPNET_OUTBOUND_DB_MAIN, so they collide
//   inbound   {name, port 1..65535, protocol "tcp" | "udp" (default tcp)}. Nalej takes the port
//             from the security rule that names the interface; appnet has no rules, so the
//             inbound carries it.
//   outbound  {name, required (default false)}

import { BadRequest, quote } from '../errors.ts';

/** Most inbounds, and separately most outbounds, one instance may declare. */
export const MAX_APPNET_INTERFACES = 64;
const IFACE_NAME = /^[A-Za-z](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const PROTOCOLS = ['tcp', 'udp'] as const;
export type InboundProtocol = (typeof PROTOCOLS)[number];

export interface InboundSpec {
  name: string;
  port: number;
  protocol: InboundProtocol;
}

export interface OutboundSpec {
  name: string;
  required: boolean;
}

/** The name's identity for collisions: case and '-' vs '_' do not tell two names apart. */
export function interfaceKey(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

function object(value: unknown, field: string, shape: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequest(`${field} must be an object ${shape}, got ${quote(value)}`, { reason: field });
  }
  return value as Record<string, unknown>;
}

function onlyFields(fields: Record<string, unknown>, accepted: string[], field: string): void {
  const extra = Object.keys(fields).find((k) => !accepted.includes(k));
  if (extra !== undefined) {
    throw new BadRequest(`unknown parameter ${quote(extra)} in ${field}; accepted: ${accepted.join(', ')}`, { reason: 'unknown-parameter' });
  }
}

export function validateInterfaceName(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new BadRequest(`${field} is required and must be a non-empty string, got ${quote(value)}`, { reason: field });
  }
  if (!IFACE_NAME.test(value)) {
    throw new BadRequest(
      `${field} ${quote(value)} is invalid: use 1 to 63 letters, digits, '-' or '_', starting with a letter and ending with a letter or digit`,
      { reason: field },
    );
  }
  return value;
}

function validateInbound(value: unknown, index: number): InboundSpec {
  const field = `inbounds.${index}`;
  const fields = object(value, field, '{name, port, protocol?}');
  onlyFields(fields, ['name', 'port', 'protocol'], field);
  const name = validateInterfaceName(fields.name, `${field}.name`);
  const port = fields.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new BadRequest(`${field}.port must be an integer 1..65535 (the port the connection opens), got ${quote(port)}`, {
      reason: `${field}.port`,
    });
  }
  const protocol = fields.protocol ?? 'tcp';
  if (!(PROTOCOLS as readonly unknown[]).includes(protocol)) {
    throw new BadRequest(`${field}.protocol must be "tcp" or "udp", got ${quote(protocol)}`, { reason: `${field}.protocol` });
  }
  return { name, port, protocol: protocol as InboundProtocol };
}

function validateOutbound(value: unknown, index: number): OutboundSpec {
  const field = `outbounds.${index}`;
  const fields = object(value, field, '{name, required?}');
  onlyFields(fields, ['name', 'required'], field);
  const name = validateInterfaceName(fields.name, `${field}.name`);
  const required = fields.required ?? false;
  if (typeof required !== 'boolean') {
    throw new BadRequest(`${field}.required must be true or false, got ${quote(required)}`, { reason: `${field}.required` });
  }
  return { name, required };
}

function list(value: unknown, field: 'inbounds' | 'outbounds', shape: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new BadRequest(`${field} must be an array of ${shape}`, { reason: field });
  if (value.length > MAX_APPNET_INTERFACES) {
    throw new BadRequest(`${field} has ${value.length} entries; an instance may declare at most ${MAX_APPNET_INTERFACES}`, { reason: field });
  }
  return value;
}

/** Validates both lists together, since names must be unique across them. 400 naming the field. */
export function validateAppnetInterfaces(inboundsValue: unknown, outboundsValue: unknown): { inbounds: InboundSpec[]; outbounds: OutboundSpec[] } {
  const inbounds = list(inboundsValue, 'inbounds', '{name, port, protocol?}').map(validateInbound);
  const outbounds = list(outboundsValue, 'outbounds', '{name, required?}').map(validateOutbound);
  const seen = new Map<string, string>();
  const named = [
    ...inbounds.map((i, n) => ({ name: i.name, field: `inbounds.${n}.name` })),
    ...outbounds.map((o, n) => ({ name: o.name, field: `outbounds.${n}.name` })),
  ];
  for (const { name, field } of named) {
    const key = interfaceKey(name);
    const first = seen.get(key);
    if (first !== undefined) {
      throw new BadRequest(
        `Inbound/outbound name defined twice: ${field} ${quote(name)} is the same name as ${first} ` +
          `(names are compared ignoring case and '-' vs '_')`,
        { reason: field },
      );
    }
    seen.set(key, field);
  }
  return { inbounds, outbounds };
}
