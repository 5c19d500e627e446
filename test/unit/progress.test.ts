// Inflights: the bounded ring of unacknowledged appends, which grows on demand. Checked against a
// plain array model under random add / freeLE / freeFirst sequences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Inflights } from '../../src/raft/progress.js';

test('Inflights behaves like a bounded FIFO of increasing indexes', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.array(
        fc.oneof(
          fc.constant({ op: 'add' as const }),
          fc.record({ op: fc.constant('freeLE' as const), by: fc.integer({ min: 0, max: 5 }) }),
          fc.constant({ op: 'freeFirst' as const }),
        ),
        { maxLength: 200 },
      ),
      (size, ops) => {
        const inf = new Inflights(size);
        const model: number[] = [];
        let next = 1;
        for (const o of ops) {
          if (o.op === 'add') {
            if (model.length === size) {
              assert.equal(inf.full(), true);
              continue;
            }
            inf.add(next);
            model.push(next++);
          } else if (o.op === 'freeLE') {
            const to = (model[0] ?? next) + o.by - 1;
            inf.freeLE(to);
            while (model.length > 0 && model[0] <= to) model.shift();
          } else {
            inf.freeFirst();
            model.shift();
          }
          assert.equal(inf.count, model.length);
          assert.equal(inf.full(), model.length === size);
        }
      },
    ),
    { numRuns: 500, seed: 42 },
  );
});
