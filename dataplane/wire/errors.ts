/**
 * The one exception type of the wire codecs.
 *
 * Every malformed-input or unrepresentable-value error thrown by `dataplane/wire/*` is a `WireError`
 * naming the protocol, the header field and the byte offset of that field (relative to the start of
 * the buffer or string handed to the codec), so an operator can find the offending byte in a capture.
 * Errors that are not `WireError` are bugs.
 */
export class WireError extends Error {
  override readonly name = 'WireError';
  /** Protocol whose codec rejected the input, e.g. `ipv4`. */
  readonly protocol: string;
  /** Header field at fault, e.g. `total_length`. */
  readonly field: string;
  /** Byte offset of that field from the start of the input. */
  readonly offset: number;

  constructor(protocol: string, field: string, offset: number, detail: string) {
    super(`${protocol}: bad ${field} at byte offset ${offset}: ${detail}`);
    this.protocol = protocol;
    this.field = field;
    this.offset = offset;
  }
}

/**
 * Throws `WireError` unless `buf` has `need` bytes from `offset`; shared by every `emitX`.
 * @internal
 */
export function checkRoom(protocol: string, buf: Uint8Array, offset: number, need: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + need > buf.length) {
    throw new WireError(protocol, 'buffer', offset,
      `need ${need} bytes at offset ${offset}, buffer has ${buf.length}`);
  }
}

/**
 * Throws `WireError` unless `value` is an integer in [0, max]; `offset` is where the field would be written.
 * @internal
 */
export function checkUint(protocol: string, field: string, offset: number, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new WireError(protocol, field, offset, `${value} is not an integer in 0..${max}`);
  }
}

/**
 * `value` as JSON for an error message, never throwing: a BigInt or a cycle (which make JSON.stringify
 * throw a TypeError) is shown by its String form instead, so a validator rejects such input with its own
 * error type.
 */
export function showValue(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(value);
  } catch {
    return `<${Object.prototype.toString.call(value)}>`;
  }
}
