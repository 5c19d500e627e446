// One-line renderings of messages for the --verbose trace.
import type { Message } from '../../src/raft/types.js';

export function fmtMsg(m: Message): string {
  const head = `${m.type} t${m.term}`;
  switch (m.type) {
    case 'app': {
      const n = m.entries.length;
      const span = n > 0 ? ` [${m.entries[0].index}..${m.entries[n - 1].index}]` : ' probe';
      return `${head} prev=${m.index}@${m.logTerm}${span} commit=${m.commit}`;
    }
    case 'appResp':
      return m.reject ? `${head} REJECT ${m.index} hint=${m.hintIndex}@${m.hintTerm}` : `${head} ok ${m.index}`;
    case 'hb':
      return `${head} commit=${m.commit}${m.ctx ? ` ctx=${m.ctx}` : ''}${m.quiesce ? ' quiesce' : ''}`;
    case 'hbResp':
      return `${head}${m.ctx ? ` ctx=${m.ctx}` : ''}`;
    case 'vote':
    case 'preVote':
      return `${head} last=${m.index}@${m.logTerm}${m.transfer ? ' transfer' : ''}`;
    case 'voteResp':
    case 'preVoteResp':
      return `${head} ${m.reject ? 'REJECT' : 'grant'}`;
    case 'snap':
      return `${head} snapshot@${m.snapshot.meta.index}/${m.snapshot.meta.term} voters=${m.snapshot.meta.conf.voters.join(',')}`;
    case 'timeoutNow':
      return head;
    case 'transferLeader':
      return `${head} target=${m.target}`;
    case 'readIndex':
      return `${head} ctx=${m.ctx}`;
    case 'readIndexResp':
      return `${head} ctx=${m.ctx} index=${m.index}`;
  }
}
