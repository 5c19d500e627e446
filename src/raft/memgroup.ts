// MemoryGroup: the replicas of one group in one process, over MemoryStorage, with a message queue
// between them. It follows the host contract for every Ready (send `messages`, persist, send
// `messagesAfterPersist`, apply, advance) and leaves delivery to its user: unit tests deliver in
// batches with links cut, the simulator's reproductions one message at a time, the core
// benchmark in rounds. Lives beside MemoryStorage rather than under test/ so that the benchmarks
// can drive the core the same way without depending on the test tree. Not exported from the
// package: it is a harness, not something a host runs.
import type { RaftNode } from './node.js';
import type { MemoryStorage } from './storage.js';
import type { Message, NodeId, Ready } from './types.js';

export class MemoryGroup {
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly storages = new Map<NodeId, MemoryStorage>();
  /** Messages sent and not yet delivered, in send order. */
  queue: Message[] = [];

  node(id: NodeId): RaftNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Hand out every Ready `id` has: queue its messages, persist it into the node's storage, queue
   *  the messages that waited for the write, let `apply` see it, advance. */
  drain(id: NodeId, apply?: (rd: Ready) => void): void {
    const n = this.node(id);
    const st = this.storages.get(id)!;
    while (n.hasReady()) {
      const rd = n.ready();
      this.enqueue(rd.messages);
      st.persist(rd);
      this.enqueue(rd.messagesAfterPersist);
      apply?.(rd);
      n.advance();
    }
  }

  /** Put messages on the wire. */
  protected enqueue(ms: readonly Message[]): void {
    for (const m of ms) this.queue.push(m);
  }
}
