// The errors of the transport layer. Decoding never throws at the transport's caller: a bad frame
// or Raft batch comes back as a value (FrameError, RaftBatchError), is counted and dropped, and
// the link goes on or is closed. A failed handshake is emitted as an event ('handshakeError').
// Only misuse of a Transport object throws (TransportStateError, PeerRemovedError). Bad options are RangeErrors
// naming the option, as for any constructor argument.
import { FlotillaError } from '../errors.js';
import type { NodeId } from '../raft/types.js';
import type { HandshakeReason } from './handshake.js';

export type TransportErrorCode =
  /** A frame's length prefix is over the limit (received), or a frame would be (sent). */
  | 'FrameTooLarge'
  /** A complete frame whose body is not a known body shape. */
  | 'MalformedFrame'
  /** A Raft batch whose header or framing is broken. */
  | 'MalformedBatch'
  /** A connection handshake refused by either side or not completed (see HandshakeError.reason). */
  | 'HandshakeFailed'
  | 'AlreadyStarted'
  | 'Closed'
  /** addPeer()/setPeer() of a node that was removed: a removed id never rejoins. */
  | 'PeerRemoved';

export abstract class FrameError extends FlotillaError<'FrameTooLarge' | 'MalformedFrame'> {}

/** A length prefix above the limit. The stream cannot be re-synchronised after this. */
export class FrameTooLarge extends FrameError {
  declare readonly code: 'FrameTooLarge';
  constructor(
    readonly frameBytes: number,
    readonly maxFrameBytes: number,
  ) {
    super('FrameTooLarge', `frame of ${frameBytes} bytes exceeds the limit of ${maxFrameBytes}`);
  }
}

/** A complete frame whose body is not one msgpack value of a known body shape. Framing is
 *  intact, so the decoder can go on with the next frame. */
export class MalformedFrame extends FrameError {
  declare readonly code: 'MalformedFrame';
  constructor(
    readonly detail: string,
    readonly frameBytes: number,
  ) {
    super('MalformedFrame', `malformed frame (${frameBytes} bytes): ${detail}`);
  }
}

/** A Raft batch (raftbatch.ts) that cannot be read at all; bad single messages are only dropped. */
export class RaftBatchError extends FlotillaError<'MalformedBatch'> {
  constructor(
    readonly detail: string,
    readonly bytes: number,
  ) {
    super('MalformedBatch', `malformed raft batch (${bytes} bytes): ${detail}`);
  }
}

/** A failed handshake, as emitted by the transport ('handshakeError') and logged. */
export class HandshakeError extends FlotillaError<'HandshakeFailed'> {
  constructor(
    readonly reason: HandshakeReason,
    /** 'accept': we refused a peer; 'dial': a peer refused us or answered wrongly. */
    readonly side: 'accept' | 'dial',
    readonly detail: string,
    /** The node id involved, when known (claimed by the remote, or the peer we dialled). */
    readonly peer: NodeId | null,
    readonly remote: string,
  ) {
    super('HandshakeFailed', `handshake ${side === 'accept' ? 'refused' : 'failed'} (${reason}): ${detail}`);
  }
}

/** start() called twice, or after close(). */
export class TransportStateError extends FlotillaError<'AlreadyStarted' | 'Closed'> {}

/** addPeer()/setPeer() of an id that removePeer() removed. A decommissioned node never comes back
 *  under its id (its data and its place in every group's history belong to the old one); a
 *  replacement joins under a new id. */
export class PeerRemovedError extends FlotillaError<'PeerRemoved'> {
  constructor(readonly peer: NodeId) {
    super('PeerRemoved', `node "${peer}" was removed and cannot be added again (a replacement needs a new id)`);
  }
}

/** Any error of this layer: `switch (e.code)` over it is exhaustive. */
export type TransportError =
  | FrameTooLarge
  | MalformedFrame
  | RaftBatchError
  | HandshakeError
  | TransportStateError
  | PeerRemovedError;
