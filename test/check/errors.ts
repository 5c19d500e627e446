// The errors of the history checker: a history it cannot read is refused naming where, never
// checked in part (a history read with lines skipped could pass vacuously).
import { FlotillaError } from '../../src/errors.js';

export type CheckErrorCode =
  /** A recorded event that is not valid on its own (not JSON, a missing or mistyped field). */
  | 'MalformedEvent'
  /** A valid event that does not fit the history so far (no pending invoke, a mismatched completion, ...). */
  | 'UnmatchedEvent'
  /** A third-party oracle history (EDN or a log) the adapters do not recognise. */
  | 'MalformedOracleHistory';

/** A recorded history refused at `line`. */
export class HistoryError extends FlotillaError<'MalformedEvent' | 'UnmatchedEvent'> {
  constructor(
    code: 'MalformedEvent' | 'UnmatchedEvent',
    readonly line: number,
    why: string,
  ) {
    super(code, `history line ${line}: ${why}`);
  }
}

export class OracleFormatError extends FlotillaError<'MalformedOracleHistory'> {
  /** `where`: "line N" of the file, or "operation N" of an EDN history. */
  constructor(
    readonly where: string,
    why: string,
  ) {
    super('MalformedOracleHistory', `oracle history, ${where}: ${why}`);
  }
}

/** Any error of this layer: `switch (e.code)` over it is exhaustive. */
export type CheckError = HistoryError | OracleFormatError;
