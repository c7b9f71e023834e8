// Assertions shared by the wire codec tests.
import type { ExecutionContext } from 'ava';
import { WireError } from '../../dataplane/wire/errors.ts';

/** Packet bytes from hex text; whitespace is ignored so packets can be laid out by header. */
export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

/** `fn` throws a WireError naming this protocol, field and byte offset. */
export function throwsWire(t: ExecutionContext, fn: () => unknown, protocol: string, field: string, offset: number): WireError | undefined {
  const err = t.throws(fn, { instanceOf: WireError }) as WireError | undefined;
  t.is(err?.protocol, protocol);
  t.is(err?.field, field);
  t.is(err?.offset, offset);
  t.true(err?.message.includes(`${protocol}: bad ${field} at byte offset ${offset}`), err?.message);
  return err;
}
