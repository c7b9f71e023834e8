/**
 * Drives the `pcap-parser` npm package (classic microsecond pcap only) synchronously over a buffer.
 *
 * pcap-parser is stream based: it pauses its input, listens for `data`/`end` and resumes on the next
 * tick. Handing it a minimal source whose `pause`/`resume` do nothing and emitting the whole buffer
 * ourselves makes it parse during `emit`, so the reader stays a pure function of the bytes.
 * What it cannot do (hence `read-pcap.ts` validates the framing first): it knows neither the
 * nanosecond magic nor pcapng, reports errors without offsets, and silently stops at a record cut
 * off by the end of the file.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

interface PcapParserModule {
  parse(input: EventEmitter & { pause(): void; resume(): void }): EventEmitter;
}

export interface PcapParserRecord {
  tsSec: number;
  tsUsec: number;
  capturedLength: number;
  originalLength: number;
  data: Buffer;
}

export interface PcapParserResult {
  snaplen: number;
  linktype: number;
  records: PcapParserRecord[];
  /** pcap-parser's own error message, if it raised one. */
  error?: string;
}

const pcapParser = createRequire(import.meta.url)('pcap-parser') as PcapParserModule;

class BufferSource extends EventEmitter {
  pause(): void {}
  resume(): void {}
}

export function parseWithPcapParser(bytes: Uint8Array): PcapParserResult {
  const source = new BufferSource();
  const parser = pcapParser.parse(source);
  const result: PcapParserResult = { snaplen: 0, linktype: 0, records: [] };
  parser.on('globalHeader', (h: { snapshotLength: number; linkLayerType: number }) => {
    result.snaplen = h.snapshotLength;
    result.linktype = h.linkLayerType;
  });
  parser.on('packet', (p: { header: { timestampSeconds: number; timestampMicroseconds: number; capturedLength: number; originalLength: number }; data: Buffer }) => {
    result.records.push({
      tsSec: p.header.timestampSeconds,
      tsUsec: p.header.timestampMicroseconds,
      capturedLength: p.header.capturedLength,
      originalLength: p.header.originalLength,
      data: p.data,
    });
  });
  parser.on('error', (e: Error) => {
    result.error = e.message;
  });
  source.emit('data', Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  source.emit('end');
  return result;
}
