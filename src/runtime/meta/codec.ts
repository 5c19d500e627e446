// Bytes of the cluster metadata: its commands (group 0's log entries) and its snapshots, in the
// storage codec's little-endian records ending in a CRC-32. Encoding refuses what would not decode
// (a command that made it into the log must decode on every replica); decoding takes untrusted
// bytes (a peer's entry or snapshot) and fails only with ClusterMetaError 'Corrupt'. Whether a
// decoded command is acceptable is apply()'s to say (as a refusal); a decoded snapshot is checked
// against every invariant of the state before it is returned.
import { CorruptRecord } from '../../storage/errors.js';
import { Reader, Writer } from '../../storage/codec.js';
import type {
  ClusterMeta,
  GroupReplicas,
  MetaCommand,
  MetaNode,
  MetaResult,
  MetaSnapshot,
  NodeLabels,
  NodeSpec,
  NodeState,
} from './clustermeta.js';
import { snapshotProblem } from './clustermeta.js';
import { ClusterMetaError } from './errors.js';

const COMMAND_FORMAT = 1;
const SNAPSHOT_MAGIC = 0x314d4346; // "FCM1"

const COMMAND_TAGS = ['bootstrap', 'addNode', 'setNodeState', 'setReplicas', 'removeGroup', 'updateNode'] as const;
const STATE_TAGS: readonly NodeState[] = ['active', 'decommissioning', 'removed'];

/** Strings longer than this may exceed the codec's 16-bit byte length in UTF-8. */
const MAX_STRING = 0xffff / 3;
const MAX_LIST = 0xffff;
/** In a /u pattern a surrogate pair is one code point, so only an unpaired half matches. */
const LONE_SURROGATE = /\p{Cs}/u;

function unencodable(what: string): never {
  throw new ClusterMetaError('Unencodable', `cluster metadata: cannot encode ${what}`);
}

function str(w: Writer, s: unknown, what: string): void {
  // Not well-formed UTF-16 (a lone surrogate) would decode as another string than the proposer's.
  if (typeof s !== 'string' || s.length > MAX_STRING || LONE_SURROGATE.test(s)) unencodable(what);
  w.str(s);
}

function index(w: Writer, n: unknown, what: string): void {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) unencodable(what);
  w.num(n);
}

function group(w: Writer, n: unknown): void {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0xffff_ffff) unencodable('a group number');
  w.u32(n);
}

function list<T>(w: Writer, xs: unknown, what: string, each: (x: T) => void): void {
  if (!Array.isArray(xs) || xs.length > MAX_LIST) unencodable(what);
  w.u16(xs.length);
  for (const x of xs) each(x);
}

function writeLabels(w: Writer, l: NodeLabels): void {
  if (typeof l !== 'object' || l === null) unencodable('labels');
  w.u8((l.zone !== undefined ? 1 : 0) | (l.rack !== undefined ? 2 : 0));
  if (l.zone !== undefined) str(w, l.zone, 'a zone label');
  if (l.rack !== undefined) str(w, l.rack, 'a rack label');
}

function readLabels(r: Reader): NodeLabels {
  const flags = r.u8();
  if (flags > 3) throw new CorruptRecord(r.what, `bad label flags ${flags}`);
  const out: { zone?: string; rack?: string } = {};
  if (flags & 1) out.zone = r.str();
  if (flags & 2) out.rack = r.str();
  return out;
}

function writeSpec(w: Writer, s: NodeSpec): void {
  if (typeof s !== 'object' || s === null) unencodable('a node');
  str(w, s.id, 'a node id');
  str(w, s.address, 'an address');
  writeLabels(w, s.labels);
}

function readSpec(r: Reader): NodeSpec {
  const id = r.str();
  const address = r.str();
  return { id, address, labels: readLabels(r) };
}

function writeState(w: Writer, s: unknown): void {
  const i = STATE_TAGS.indexOf(s as NodeState);
  if (i < 0) unencodable('a node state');
  w.u8(i);
}

function readState(r: Reader): NodeState {
  const i = r.u8();
  const s = STATE_TAGS[i];
  if (s === undefined) throw new CorruptRecord(r.what, `bad node state ${i}`);
  return s;
}

function writeReplicas(w: Writer, g: GroupReplicas): void {
  group(w, g.group);
  index(w, g.confIndex, 'a configuration index');
  list<string>(w, g.voters, 'voters', (v) => str(w, v, 'a voter'));
  list<string>(w, g.learners, 'learners', (l) => str(w, l, 'a learner'));
}

function readReplicas(r: Reader): GroupReplicas {
  const g = r.u32();
  const confIndex = r.num();
  const voters: string[] = [];
  for (let n = r.u16(); n > 0; n--) voters.push(r.str());
  const learners: string[] = [];
  for (let n = r.u16(); n > 0; n--) learners.push(r.str());
  return { group: g, voters, learners, confIndex };
}

export function encodeMetaCommand(cmd: MetaCommand): Uint8Array {
  if (typeof cmd !== 'object' || cmd === null) unencodable('a non-object');
  const tag = COMMAND_TAGS.indexOf(cmd.type);
  if (tag < 0) unencodable(`command type ${String(cmd.type)}`);
  const w = new Writer(128);
  w.u8(COMMAND_FORMAT);
  w.u8(tag);
  switch (cmd.type) {
    case 'bootstrap':
      str(w, cmd.clusterId, 'a cluster id');
      list<NodeSpec>(w, cmd.nodes, 'nodes', (s) => writeSpec(w, s));
      break;
    case 'addNode':
      str(w, cmd.clusterId, 'a cluster id');
      writeSpec(w, cmd);
      break;
    case 'updateNode':
      writeSpec(w, cmd);
      break;
    case 'setNodeState':
      str(w, cmd.id, 'a node id');
      writeState(w, cmd.state);
      break;
    case 'setReplicas':
      writeReplicas(w, cmd);
      break;
    case 'removeGroup':
      group(w, cmd.group);
      break;
  }
  return w.finish();
}

export function decodeMetaCommand(buf: Uint8Array): MetaCommand {
  return decoding('cluster metadata command', buf, (r) => {
    const format = r.u8();
    if (format !== COMMAND_FORMAT) throw new CorruptRecord(r.what, `unknown format ${format}`);
    const tag = r.u8();
    const type = COMMAND_TAGS[tag];
    let cmd: MetaCommand;
    switch (type) {
      case 'bootstrap': {
        const clusterId = r.str();
        const nodes: NodeSpec[] = [];
        for (let n = r.u16(); n > 0; n--) nodes.push(readSpec(r));
        cmd = { type, clusterId, nodes };
        break;
      }
      case 'addNode': {
        const clusterId = r.str();
        cmd = { type, clusterId, ...readSpec(r) };
        break;
      }
      case 'updateNode':
        cmd = { type, ...readSpec(r) };
        break;
      case 'setNodeState': {
        const id = r.str();
        cmd = { type, id, state: readState(r) };
        break;
      }
      case 'setReplicas':
        cmd = { type, ...readReplicas(r) };
        break;
      case 'removeGroup':
        cmd = { type, group: r.u32() };
        break;
      default:
        throw new CorruptRecord(r.what, `unknown command ${tag}`);
    }
    r.done();
    return cmd;
  });
}

/** Apply the command in a committed log entry's bytes: what a replica of group 0 does for each
 *  entry. Bytes that do not decode are refused ('Corrupt'), as they are on every replica. */
export function applyEncoded(meta: ClusterMeta, data: Uint8Array, index: number): MetaResult {
  let cmd: MetaCommand;
  try {
    cmd = decodeMetaCommand(data);
  } catch (e) {
    if (e instanceof ClusterMetaError) return { ok: false, reason: 'Corrupt', detail: e.message };
    throw e;
  }
  return meta.apply(cmd, index);
}

export function encodeMetaSnapshot(s: MetaSnapshot): Uint8Array {
  if (typeof s !== 'object' || s === null) unencodable('a non-object snapshot');
  if (!Array.isArray(s.nodes) || !Array.isArray(s.groups)) unencodable('a snapshot without node and group lists');
  const w = new Writer(64 + s.nodes.length * 64 + s.groups.length * 40);
  w.u32(SNAPSHOT_MAGIC);
  str(w, s.clusterId, 'a cluster id');
  index(w, s.version, 'a version');
  w.u32(s.nodes.length);
  for (const n of s.nodes) {
    writeSpec(w, n);
    writeState(w, n.state);
    index(w, n.joinedAt, 'a join index');
  }
  w.u32(s.groups.length);
  for (const g of s.groups) {
    if (typeof g !== 'object' || g === null) unencodable('a group');
    writeReplicas(w, g);
  }
  return w.finish();
}

/** A snapshot from bytes, checked against every invariant the state keeps. */
export function decodeMetaSnapshot(buf: Uint8Array): MetaSnapshot {
  return decoding('cluster metadata snapshot', buf, (r) => {
    if (r.u32() !== SNAPSHOT_MAGIC) throw new CorruptRecord(r.what, 'bad magic');
    const clusterId = r.str();
    const version = r.num();
    const nodes: MetaNode[] = [];
    // Counts are bounded by the bytes left (every item takes some), so a forged count cannot
    // make the loop outlast the record.
    for (let n = r.u32(); n > 0; n--) {
      const spec = readSpec(r);
      const state = readState(r);
      nodes.push({ ...spec, state, joinedAt: r.num() });
    }
    const groups: GroupReplicas[] = [];
    for (let n = r.u32(); n > 0; n--) groups.push(readReplicas(r));
    r.done();
    const snap: MetaSnapshot = { clusterId, version, nodes, groups };
    const problem = snapshotProblem(snap);
    if (problem !== null) throw new CorruptRecord(r.what, problem);
    return snap;
  });
}

/** Run `body` over a checksummed reader of `buf`; any failure becomes ClusterMetaError 'Corrupt'
 *  (the storage reader throws CorruptRecord, and its fatal UTF-8 decoder a TypeError). */
function decoding<T>(what: string, buf: Uint8Array, body: (r: Reader) => T): T {
  if (!(buf instanceof Uint8Array)) throw new ClusterMetaError('Corrupt', `${what}: not bytes`);
  try {
    return body(new Reader(buf, what));
  } catch (e) {
    if (e instanceof CorruptRecord) throw new ClusterMetaError('Corrupt', e.message, { cause: e });
    if (e instanceof TypeError) throw new ClusterMetaError('Corrupt', `corrupt ${what}: bad UTF-8`, { cause: e });
    throw e;
  }
}
