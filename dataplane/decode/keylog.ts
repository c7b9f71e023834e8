/**
 * Keylog files, as `appnet keys export` writes them: `#` comments, blank lines, and one line per
 * receive direction of a link session:
 *
 *     APPNET_LINK_KEY <receiver index, 8 hex digits> <key, 64 hex digits>
 *
 * meaning "data messages whose receiver index is this were sealed with this key". An index may appear
 * more than once (sessions come and go over a long capture); the decoder tries each of its keys.
 */

export type Keylog = ReadonlyMap<number, readonly Uint8Array[]>;

export const KEYLOG_LABEL = 'APPNET_LINK_KEY';

export class KeylogError extends Error {
  override readonly name = 'KeylogError';
  constructor(readonly line: number, detail: string) {
    super(`keylog line ${line}: ${detail}`);
  }
}

export function parseKeylog(text: string): Keylog {
  const keys = new Map<number, Uint8Array[]>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    const n = i + 1;
    const words = line.split(/\s+/);
    if (words[0] !== KEYLOG_LABEL) {
      throw new KeylogError(n, `unknown label "${words[0].slice(0, 40)}", expected ${KEYLOG_LABEL}`);
    }
    if (words.length !== 3) {
      throw new KeylogError(n, `expected "${KEYLOG_LABEL} <receiver index, 8 hex digits> <key, 64 hex digits>", got ${words.length} words`);
    }
    const [, index, key] = words;
    if (!/^[0-9a-fA-F]{8}$/.test(index)) throw new KeylogError(n, `receiver index "${index.slice(0, 20)}" is not 8 hex digits`);
    if (!/^[0-9a-fA-F]{64}$/.test(key)) throw new KeylogError(n, `key is not 64 hex digits (got ${key.length} characters)`);
    const receiver = Number.parseInt(index, 16);
    const list = keys.get(receiver) ?? [];
    list.push(Uint8Array.from(Buffer.from(key, 'hex')));
    keys.set(receiver, list);
  }
  return keys;
}
