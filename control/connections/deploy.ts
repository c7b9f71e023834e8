// Connections declared when an instance is deployed (Nalej's deploy-time connections): POST /instances
// takes `connect: [{outbound, target, inbound}]` and the CLI `--connect OUTBOUND=TARGET:INBOUND`. Pure.
//
// Contracts: each entry names one of the instance's own outbounds, once; every `required` outbound must
// be filled by an entry, else 400 "Required outbound not filled: <name>" (Nalej's message), before
// anything is written.
import { BadRequest, quote } from '../errors.ts';

export interface DeployConnection {
  outbound: string;
  target: string;
  inbound: string;
}

const FIELDS = ['outbound', 'target', 'inbound'] as const;

export function validateDeployConnections(value: unknown, outbounds: unknown): DeployConnection[] {
  const list = value === undefined ? [] : value;
  if (!Array.isArray(list)) throw new BadRequest('connect must be an array of {outbound, target, inbound}', { reason: 'connect' });
  const declared = Array.isArray(outbounds) ? (outbounds as Array<{ name?: unknown; required?: unknown }>) : [];
  const out: DeployConnection[] = [];
  for (const [i, entry] of list.entries()) {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new BadRequest(`connect.${i} must be an object`, { reason: 'connect' });
    const e = entry as Record<string, unknown>;
    const extra = Object.keys(e).find((k) => !(FIELDS as readonly string[]).includes(k));
    if (extra !== undefined) throw new BadRequest(`unknown parameter ${quote(extra)} in connect.${i}; accepted: ${FIELDS.join(', ')}`, { reason: 'connect' });
    for (const f of FIELDS) {
      if (typeof e[f] !== 'string' || e[f] === '') throw new BadRequest(`connect.${i}.${f} must be a non-empty string`, { reason: 'connect' });
    }
    const c = { outbound: e.outbound as string, target: e.target as string, inbound: e.inbound as string };
    if (!declared.some((o) => o.name === c.outbound)) throw new BadRequest(`connect.${i}.outbound ${quote(c.outbound)} is not an outbound of the instance`, { reason: 'connect' });
    if (out.some((o) => o.outbound === c.outbound)) throw new BadRequest(`connect.${i}.outbound ${quote(c.outbound)} is connected twice`, { reason: 'connect' });
    out.push(c);
  }
  for (const o of declared) {
    if (o.required === true && !out.some((c) => c.outbound === o.name)) {
      throw new BadRequest(`Required outbound not filled: ${String(o.name)}`, { reason: 'connect' });
    }
  }
  return out;
}
