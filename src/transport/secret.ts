// The rule a cluster secret must meet, apart from the handshake (handshake.ts) that proves it:
// the command line's help states the rule without loading the frame codec.

/** The shortest cluster secret accepted (characters). */
export const MIN_SECRET_LENGTH = 16;
