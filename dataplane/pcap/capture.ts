/**
 * What the capture points deliver and what the readers return.
 *
 * Every record is a whole Ethernet frame (linktype 1), possibly cut to the snapshot length; `origLen` is
 * the frame's length on the wire. Timestamps are nanoseconds since the Unix epoch as `bigint` so that
 * nanosecond files round-trip exactly.
 */

export type CaptureFormat = 'pcap' | 'pcap-ns' | 'pcapng';

export const CAPTURE_FORMATS: readonly CaptureFormat[] = ['pcap', 'pcap-ns', 'pcapng'];

/** LINKTYPE_ETHERNET: the only link type the capture points produce. */
export const LINKTYPE_ETHERNET = 1;
/** Default snapshot length, tcpdump's: large enough for any frame the data plane carries. */
export const DEFAULT_SNAPLEN = 262144;

/** One frame as a capture point saw it. */
export interface CaptureRecord {
  tsNs: bigint;
  /** Capture point name, e.g. `port:inst-a`, `vni:42`, `wire`; becomes the pcapng interface name. */
  point: string;
  /** The frame, possibly truncated to the snapshot length. */
  data: Uint8Array;
  /** Length of the whole frame; at least `data.length`. */
  origLen: number;
  /** pcapng only: an opt_comment on this packet. */
  comment?: string;
}

export interface CapturedPacket {
  tsNs: bigint;
  data: Uint8Array;
  origLen: number;
  /** pcapng: the interface name (capture point) the packet was recorded on, when the file names it. */
  point?: string;
  comment?: string;
}

export interface CaptureInterface {
  name?: string;
  linktype: number;
  snaplen: number;
}

export interface Capture {
  format: CaptureFormat;
  /** Link type of the file (pcap) or of its first interface (pcapng; see `interfaces` for all). */
  linktype: number;
  snaplen: number;
  packets: CapturedPacket[];
  /** pcapng: interfaces in the order of their description blocks (all sections). */
  interfaces?: CaptureInterface[];
  /** pcapng: the section header's comment. */
  comment?: string;
}

/** The writer side: a header once, then one buffer per record, each appendable as it comes. */
export interface CaptureWriter {
  readonly format: CaptureFormat;
  /** Bytes kept per record; longer records are cut, keeping their original length. */
  readonly snaplen: number;
  /** The bytes that start the file. */
  header(): Buffer;
  /** The bytes of one record (pcapng: preceded by an interface block the first time a point appears). */
  record(record: CaptureRecord): Buffer;
}

export interface CaptureWriterOptions {
  snaplen?: number;
  linktype?: number;
  /** Byte order of every header field. Default little-endian; readers accept both. */
  byteOrder?: 'le' | 'be';
  /** pcapng: section header comment. */
  comment?: string;
  /**
   * pcapng: capture points to describe in the header. libpcap (tcpdump) refuses a file without any
   * interface block, so a live capture that declares its points up front is readable before its first
   * packet. Points not listed get their interface block with their first packet.
   */
  points?: readonly string[];
}
