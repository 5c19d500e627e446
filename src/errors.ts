// The base of every error flotilla throws or rejects with. Each layer declares the union of its
// own codes (the Raft core's, storage's, transport's, the runtime's, ...) and its error classes
// narrow `code` to that union, so a caller can switch on `code` exhaustively within a layer and
// still recognise any of ours with one `instanceof FlotillaError`. This module sits below every
// layer and imports nothing.

export class FlotillaError<Code extends string = string> extends Error {
  constructor(
    readonly code: Code,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
