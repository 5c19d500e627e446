// Encoding and application of single-member configuration changes. A conf change entry's data is
// `type:node|voters|learners` in UTF-8: the change plus the full configuration it produces. Carrying
// the result makes application absolute (idempotent) and lets a node that joined with an empty
// configuration learn the whole membership from the log, not just the deltas it happened to see.
import { RaftError, type ConfChange, type ConfChangeType, type ConfState, type NodeId } from './types.js';

const TYPES: readonly ConfChangeType[] = ['addVoter', 'addLearner', 'remove'];
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface ConfChangeEntry {
  readonly change: ConfChange;
  /** Membership after the change. */
  readonly conf: ConfState;
}

export function encodeConfChange(cc: ConfChange, result: ConfState): Uint8Array {
  return enc.encode(`${cc.type}:${cc.node}|${result.voters.join(',')}|${result.learners.join(',')}`);
}

export function decodeConfChange(data: Uint8Array): ConfChangeEntry {
  const s = dec.decode(data);
  const [head, voters, learners, ...rest] = s.split('|');
  const at = head.indexOf(':');
  const type = head.slice(0, at) as ConfChangeType;
  const node = head.slice(at + 1);
  if (
    at <= 0 ||
    !TYPES.includes(type) ||
    node.length === 0 ||
    voters === undefined ||
    learners === undefined ||
    rest.length > 0
  ) {
    throw new RaftError('Malformed', `bad conf change entry: ${JSON.stringify(s)}`);
  }
  const list = (x: string) => (x.length === 0 ? [] : x.split(','));
  const conf = { voters: list(voters), learners: list(learners) };
  if (conf.voters.length === 0)
    throw new RaftError('Malformed', `conf change entry leaves no voters: ${JSON.stringify(s)}`);
  return { change: { type, node }, conf };
}

/** Why a change is not allowed against `conf`, or null if it is. Checked at proposal time only:
 *  applying is idempotent so that re-applying after a crash is harmless. */
/** The refusal of a removal of a node the configuration does not have (hosts recognise it: the
 *  removal they asked for is already done). */
export function notAMember(node: NodeId): string {
  return `${node} is not a member`;
}

export function validateConfChange(conf: ConfState, cc: ConfChange): string | null {
  if (typeof cc.node !== 'string' || cc.node.length === 0 || /[:|,]/.test(cc.node))
    return 'node id must be a non-empty string without ":", "|" or ","';
  const isVoter = conf.voters.includes(cc.node);
  const isLearner = conf.learners.includes(cc.node);
  switch (cc.type) {
    case 'addVoter':
      return isVoter ? `${cc.node} is already a voter` : null;
    case 'addLearner':
      if (isLearner) return `${cc.node} is already a learner`;
      if (isVoter && conf.voters.length === 1) return `cannot demote the only voter ${cc.node}`;
      return null;
    case 'remove':
      if (!isVoter && !isLearner) return notAMember(cc.node);
      if (isVoter && conf.voters.length === 1) return `cannot remove the only voter ${cc.node}`;
      return null;
    default:
      return `unknown conf change type ${String((cc as ConfChange).type)}`;
  }
}

export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = new Set<NodeId>(conf.voters);
  const learners = new Set<NodeId>(conf.learners);
  switch (cc.type) {
    case 'addVoter':
      learners.delete(cc.node);
      voters.add(cc.node);
      break;
    case 'addLearner':
      voters.delete(cc.node);
      learners.add(cc.node);
      break;
    case 'remove':
      voters.delete(cc.node);
      learners.delete(cc.node);
      break;
  }
  return { voters: [...voters].sort(), learners: [...learners].sort() };
}
