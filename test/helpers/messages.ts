// Sample Raft messages of every type, for codec and validation tests.
import type { Message, MessageType } from '../../src/raft/index.js';

const bytes = (s: string) => new TextEncoder().encode(s);

/** A well-formed message of `type` for `group`, with a little of everything in it. */
export function sample(type: MessageType, group = 1): Message {
  const base = { group, from: 'n1', to: 'n2', term: 7 };
  switch (type) {
    case 'app':
      return {
        ...base,
        type,
        index: 10,
        logTerm: 6,
        commit: 9,
        entries: [
          { index: 11, term: 6, type: 'normal', data: bytes('hello') },
          { index: 12, term: 7, type: 'conf', data: bytes('addLearner:n4') },
          { index: 13, term: 7, type: 'normal', data: new Uint8Array(0) },
        ],
      };
    case 'appResp':
      return { ...base, type, index: 13, reject: true, hintIndex: 5, hintTerm: 3 };
    case 'hb':
      return { ...base, type, commit: 9, ctx: 'read-1', seq: 42, quiesce: true };
    case 'hbResp':
      return { ...base, type, ctx: 'read-1', seq: 42 };
    case 'vote':
    case 'preVote':
      return { ...base, type, index: 13, logTerm: 7, transfer: true };
    case 'voteResp':
    case 'preVoteResp':
      return { ...base, type, reject: false };
    case 'snap':
      return {
        ...base,
        type,
        snapshot: {
          meta: { index: 100, term: 6, conf: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } },
          data: bytes('state machine image'),
        },
      };
    case 'timeoutNow':
      return { ...base, type };
    case 'transferLeader':
      return { ...base, type, target: 'n3' };
    case 'readIndex':
      return { ...base, type, ctx: 'r7' };
    case 'readIndexResp':
      return { ...base, type, ctx: 'r7', index: 99 };
  }
}
