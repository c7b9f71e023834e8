/**
 * The one exception type of the capture-file readers and writers.
 *
 * The message names the format, what is wrong and the byte offset from the start of the file, so an
 * operator can look at the file with `xxd -s <offset>`. A reader that fails part-way attaches what it
 * read before the fault (`partial`), so a capture cut off mid-record still shows its whole packets.
 */
import type { Capture, CaptureFormat } from './capture.ts';

export class CaptureFileError extends Error {
  override readonly name = 'CaptureFileError';
  /** `capture` when the format itself could not be recognised. */
  readonly format: CaptureFormat | 'capture';
  /** Byte offset of the offending header, block or field, from the start of the file. */
  readonly offset: number;
  /** The packets read before the fault, when the header was valid. */
  partial?: Capture;

  constructor(format: CaptureFormat | 'capture', offset: number, detail: string) {
    super(`${format}: ${detail}`);
    this.format = format;
    this.offset = offset;
  }
}
