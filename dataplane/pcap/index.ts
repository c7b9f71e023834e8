/** Capture files: pcap (µs and ns) and pcapng writers, the reader, and the file edge. */
export * from './capture.ts';
export { CaptureFileError } from './errors.ts';
export { PcapWriter, PCAP_MAGIC_NS, PCAP_MAGIC_US } from './pcap-writer.ts';
export { PcapngWriter } from './pcapng-writer.ts';
export { readPcap, PCAP_MAX_RECORD_LEN } from './read-pcap.ts';
export { readPcapng } from './read-pcapng.ts';
export { readCapture } from './read-capture.ts';
export { CaptureFile, createCaptureWriter, writeCapture } from './capture-file.ts';
export { packedToPcapRecords, packedToPcapngBlocks, type PackedRecordScope } from './packed-to-pcap.ts';
