// The errors of the storage layer. A store that could not make a write durable fails stop
// (StorageFailed, for that commit and every later one); a value read back that fails its checks
// is never trusted (CorruptRecord). Bad arguments from the Raft side are RaftErrors, not these.
import { FlotillaError } from '../errors.js';

export type StorageErrorCode =
  /** A write or commit did not become durable (I/O error, full disk); the store is fail-stopped. */
  | 'StorageFailed'
  /** A record read back is truncated, fails its checksum, or does not decode. */
  | 'CorruptRecord'
  /** A snapshot stream refused a chunk or a stream (see SnapshotStreamError). */
  | 'SnapshotStream';

/** The store is fail-stopped: `cause` is the I/O error that stopped it. */
export class StorageFailed extends FlotillaError<'StorageFailed'> {
  constructor(message: string, cause?: unknown) {
    super('StorageFailed', message, { cause });
  }
}

export class CorruptRecord extends FlotillaError<'CorruptRecord'> {
  constructor(
    what: string,
    detail: string,
    /** The value failed its CRC-32: its bytes are not the ones written. Otherwise they may be
     *  exactly what was written and still not decode (a log entry's command from a faulty peer). */
    readonly checksum = false,
  ) {
    super('CorruptRecord', `corrupt ${what}: ${detail}`);
  }
}

/** Why a snapshot stream refused a frame or a whole stream (snapstream.ts). */
export type SnapshotStreamFault =
  /** The frame does not decode or fails its CRC-32: nothing in it is trusted. */
  | 'BadFrame'
  /** The last chunk's totals (chunk count, bytes, whole-stream CRC-32) differ from what arrived. */
  | 'StreamChecksum'
  /** The staging file could not be written or read back. */
  | 'StagingIo';

/** A snapshot chunk or stream was refused; the stream resends or starts over (never installs). */
export class SnapshotStreamError extends FlotillaError<'SnapshotStream'> {
  constructor(
    readonly fault: SnapshotStreamFault,
    message: string,
    options?: ErrorOptions,
  ) {
    super('SnapshotStream', message, options);
  }
}

/** Any error of this layer: `switch (e.code)` over it is exhaustive. */
export type StorageError = StorageFailed | CorruptRecord | SnapshotStreamError;
