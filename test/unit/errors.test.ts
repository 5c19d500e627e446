// Every layer's errors share one base (FlotillaError) and carry their layer's code; `name` stays
// the class's own name, which logs and operators match on. Errors are produced through the code
// paths that really throw or return them wherever that needs no disk or network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlotillaError } from '../../src/errors.js';
import { CorruptRecord, StorageFailed } from '../../src/storage/errors.js';
import { decodeEntry, decodeWal } from '../../src/storage/codec.js';
import { FRAME_HEADER_BYTES, FrameDecoder } from '../../src/transport/codec.js';
import { RaftBatchCodec } from '../../src/transport/raftbatch.js';
import {
  FrameTooLarge,
  HandshakeError,
  MalformedFrame,
  RaftBatchError,
  TransportStateError,
} from '../../src/transport/errors.js';
import { validateBalancerConfig, type BalancerConfig } from '../../src/balancer/balancer.js';
import { BalancerConfigError } from '../../src/balancer/errors.js';
import { RuntimeError, TransferError } from '../../src/runtime/errors.js';
import { ConfigError, parseStartArgs } from '../../src/cli/start.js';
import { HistoryError, OracleFormatError } from '../check/errors.js';
import { parseHistory } from '../check/history.js';
import { readEdn } from '../check/oracle.js';

/** The error `fn` throws (fails the test if it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a throw');
}

function isOurs(e: unknown, cls: abstract new (...a: never[]) => Error, code: string, name: string): void {
  assert.ok(e instanceof FlotillaError, `a FlotillaError: ${String(e)}`);
  assert.ok(e instanceof cls, `a ${cls.name}: ${String(e)}`);
  assert.equal(e.code, code);
  assert.equal(e.name, name);
  assert.ok(String(e).startsWith(`${name}: `), 'toString() leads with the class name');
}

test('storage: a short or damaged record is a CorruptRecord; a fail-stop is a StorageFailed with its cause', () => {
  isOurs(
    thrown(() => decodeEntry(new Uint8Array(2), 1, 1)),
    CorruptRecord,
    'CorruptRecord',
    'CorruptRecord',
  );
  const e = thrown(() => decodeWal(new Uint8Array(64), 1));
  isOurs(e, CorruptRecord, 'CorruptRecord', 'CorruptRecord');
  assert.match((e as Error).message, /^corrupt /);
  const cause = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  const f = new StorageFailed('WAL append failed in /x: no space left on device (ENOSPC)', cause);
  isOurs(f, StorageFailed, 'StorageFailed', 'StorageFailed');
  assert.equal(f.cause, cause);
});

test('transport: an oversized length, a garbage body and a broken Raft batch each come back typed', () => {
  const hdr = Buffer.alloc(4);
  hdr.writeUInt32BE(1024 - FRAME_HEADER_BYTES + 1, 0);
  const big = new FrameDecoder({ maxFrameBytes: 1024 }).decode(hdr);
  assert.ok(big.length === 1 && big[0].kind === 'error');
  isOurs(big[0].error, FrameTooLarge, 'FrameTooLarge', 'FrameTooLarge');

  const body = Buffer.from([0xc1]); // a msgpack byte that is never valid
  const frame = Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);
  const bad = new FrameDecoder().decode(frame);
  assert.ok(bad.length === 1 && bad[0].kind === 'error');
  isOurs(bad[0].error, MalformedFrame, 'MalformedFrame', 'MalformedFrame');

  const r = new RaftBatchCodec().decode(new Uint8Array([0x00, 2, 0, 0]));
  isOurs(r, RaftBatchError, 'MalformedBatch', 'RaftBatchError');
  assert.match((r as RaftBatchError).message, /bad magic/);

  const h = new HandshakeError('WrongCluster', 'accept', 'cluster x, expected y', 'n2', '127.0.0.1:5000');
  isOurs(h, HandshakeError, 'HandshakeFailed', 'HandshakeError');
  assert.equal(h.reason, 'WrongCluster');
  isOurs(
    new TransportStateError('Closed', 'transport is closed'),
    TransportStateError,
    'Closed',
    'TransportStateError',
  );
});

test('balancer: a bad setting is a BalancerConfigError naming the field; the runtime maps it to InvalidArgument', () => {
  const unknown = thrown(() => validateBalancerConfig({ bogus: 1 } as BalancerConfig));
  isOurs(unknown, BalancerConfigError, 'UnknownSetting', 'BalancerConfigError');
  assert.equal((unknown as BalancerConfigError).field, 'balancer.bogus');
  assert.equal((unknown as Error).message, 'balancer.bogus: unknown setting');

  const range = thrown(() => validateBalancerConfig({ followWorkload: { minShare: 0.2 } }));
  isOurs(range, BalancerConfigError, 'InvalidSetting', 'BalancerConfigError');
  assert.equal((range as BalancerConfigError).field, 'balancer.followWorkload.minShare');
  assert.equal((range as Error).message, 'balancer.followWorkload.minShare: must be a number in 0.5..1');

  const label = thrown(() =>
    validateBalancerConfig({ preferences: [{ groups: [1], leaders: [{ region: 'x' } as never] }] }),
  );
  isOurs(label, BalancerConfigError, 'UnknownSetting', 'BalancerConfigError');

  const rt = RuntimeError.fromBalancer(range as BalancerConfigError);
  isOurs(rt, RuntimeError, 'InvalidArgument', 'RuntimeError');
  assert.equal(rt.message, (range as Error).message);
  assert.equal(rt.retryable, false);
});

test('runtime: RuntimeError keeps leader and retryable; TransferError is a RuntimeError with its reason', () => {
  const nl = RuntimeError.fromProposal({ ok: false, reason: 'NotLeader', leader: 'n2' }, '');
  isOurs(nl, RuntimeError, 'NotLeader', 'RuntimeError');
  assert.equal(nl.leader, 'n2');
  assert.equal(nl.retryable, true);
  const t = new TransferError('TargetLagging', 'n3 is 900 entries behind', 'n1');
  isOurs(t, RuntimeError, 'TransferFailed', 'TransferError');
  assert.ok(t instanceof TransferError);
  assert.equal(t.reason, 'TargetLagging');
  assert.equal(t.leader, 'n1');
  assert.equal(t.retryable, false);
});

test('start config: a bad, conflicting or incomplete option is a ConfigError with its code and field', () => {
  const flags = ['--id', 'n1', '--data', '/tmp/x', '--listen', '127.0.0.1:7001'];
  const cases: [string[], string, string][] = [
    [[...flags, '--timing-scale', '0'], 'InvalidValue', 'timingScale'],
    [['--data', '/tmp/x', '--listen', '127.0.0.1:7001'], 'InvalidValue', 'id'],
    [[...flags, '--balancer', '--no-balancer'], 'ConflictingOptions', 'balancer'],
    [[...flags, '--tls-ca', '/tmp/ca.pem'], 'IncompleteOptions', 'transportSecurity.tls.cert'],
  ];
  for (const [argv, code, field] of cases) {
    const e = thrown(() => parseStartArgs(argv));
    isOurs(e, ConfigError, code, 'ConfigError');
    assert.equal((e as ConfigError).field, field);
    assert.match((e as Error).message, new RegExp(`^config: ${field}: `));
  }
});

test('check: a malformed event, an unmatched one and an unreadable oracle history each have their code', () => {
  const line = (type: string, f: string, value: unknown, time: number) =>
    JSON.stringify({ type, process: 1, f, key: 'k', value, time });
  const bad = thrown(() => parseHistory(`${line('invoke', 'write', 'a', 0)}\nnot json`));
  isOurs(bad, HistoryError, 'MalformedEvent', 'HistoryError');
  assert.equal((bad as HistoryError).line, 2);
  const unmatched = thrown(() => parseHistory(line('ok', 'write', 'a', 0)));
  isOurs(unmatched, HistoryError, 'UnmatchedEvent', 'HistoryError');
  isOurs(
    thrown(() => readEdn('[{:a "unterminated}]')),
    OracleFormatError,
    'MalformedOracleHistory',
    'OracleFormatError',
  );
});
