// A worker thread's log calls become records that cross the port (msgpack, as PackedPort
// encodes them) and are written by the main thread's logger: fields, bindings, errors with their
// type and stack, printf-style messages; a disabled level posts nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr, Unpackr } from 'msgpackr';
import { RuntimeError } from '../../src/runtime/errors.js';
import { replayWorkerLog, workerLogger, type WorkerLogRecord } from '../../src/runtime/workerlog.js';
import { duplicateKeys, memoryLogger } from '../helpers/log.js';

const packr = new Packr({ useRecords: true, structuredClone: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: true, structuredClone: false, moreTypes: false });

function pipe(level: string) {
  const mem = memoryLogger('debug');
  const main = mem.logger.child({ node: 'n1' }).child({ worker: 3 });
  const posted: WorkerLogRecord[] = [];
  const log = workerLogger(level, (r) => {
    posted.push(r);
    replayWorkerLog(main, unpackr.unpack(packr.pack([r]))[0] as WorkerLogRecord);
  });
  return { log, posted, ...mem };
}

test('worker log records reach the main logger with fields, bindings and the level', () => {
  const { log, posted, lines, raw } = pipe('info');
  log.debug({ group: 1 }, 'not at info');
  assert.equal(posted.length, 0, 'a disabled level posts nothing');
  log.info({ groups: 5, nested: { a: [1, 2], m: new Map([['k', 1]]) }, skip: () => 1 }, 'shard started');
  log.child({ group: 9 }).warn('group %d is %s', 9, 'slow');
  log.info('plain');
  assert.equal(lines.length, 3);
  assert.deepEqual(
    { ...lines[0], time: 0, pid: 0, hostname: '' },
    {
      level: 30,
      time: 0,
      pid: 0,
      hostname: '',
      node: 'n1',
      worker: 3,
      groups: 5,
      nested: { a: [1, 2], m: { k: 1 } },
      msg: 'shard started',
    },
  );
  assert.equal(lines[1].level, 40);
  assert.equal(lines[1].group, 9, "a child logger's bindings travel with the line");
  assert.equal(lines[1].msg, 'group 9 is slow');
  assert.equal(lines[2].msg, 'plain');
  for (const l of raw) assert.deepEqual(duplicateKeys(l), [], l);
});

test('an error logged in a worker keeps its type, message, code and stack', () => {
  const { log, lines } = pipe('info');
  log.error({ err: new RuntimeError('Unavailable', 'shard 2 is down') }, 'request failed');
  log.error(new TypeError('bad thing'));
  const [a, b] = lines as { err: { type: string; message: string; stack: string; code?: string }; msg: string }[];
  assert.equal(a.err.type, 'RuntimeError');
  assert.equal(a.err.message, 'shard 2 is down');
  assert.equal(a.err.code, 'Unavailable');
  assert.match(a.err.stack, /shard 2 is down\n\s+at .*workerlog\.test\.ts/);
  assert.equal(a.msg, 'request failed');
  assert.equal(b.err.type, 'TypeError');
  assert.equal(b.msg, 'bad thing');
});
