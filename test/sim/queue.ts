// Discrete-event queue: a binary min-heap ordered by (time, insertion sequence). The sequence
// number breaks ties deterministically, so equal-time events always pop in the order they were
// scheduled and a seed replays exactly.

export interface Timed {
  time: number;
  seq: number;
}

/** An event without its sequence number (distributes over unions of event kinds). */
export type Unsequenced<T> = T extends Timed ? Omit<T, 'seq'> : never;

export class EventQueue<T extends Timed> {
  private heap: T[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Assigns the event its sequence number and inserts it. */
  push(ev: Unsequenced<T>): void {
    const e = ev as unknown as T;
    e.seq = this.nextSeq++;
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  pop(): T | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

function less(a: Timed, b: Timed): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
