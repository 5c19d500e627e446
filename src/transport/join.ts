// The joiner's side of a join handshake (join mode in handshake.ts): a node that is not in a
// cluster yet connects to a seed address, authenticates with the cluster secret and/or its
// certificate exactly as a member would, presents its id, address and labels, and learns whether
// it was admitted and, if so, the cluster id. One connection, one answer, then it is closed; an
// admitted node then runs a Transport with that cluster id and the members connect to it.
import net from 'node:net';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import type { NodeId } from '../raft/types.js';
import { FrameDecoder, FrameEncoder, type DecodeResult } from './codec.js';
import { HandshakeError } from './errors.js';
import {
  HANDSHAKE_MAX_FRAME_BYTES,
  JOIN_VERSION,
  authProof,
  checkAcceptorReply,
  checkJoined,
  checkProofFrame,
  makeHello,
  makeProofFrame,
  newAuthSlot,
  verifyProof,
  type AuthTranscript,
  type HandshakeReason,
  type JoinSlot,
} from './handshake.js';
import { certMismatch, parseAddress, prepareSecurity, type TransportTlsOptions } from './transport.js';

export interface JoinOptions {
  /** The id this node asks to join under. */
  readonly nodeId: NodeId;
  /** Where members should dial this node, 'host:port'. */
  readonly address: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** A member's transport address, 'host:port'. */
  readonly seed: string;
  /** The cluster the joiner expects; the seed refuses with ClusterMismatch if it is in another.
   *  Default: any (the answer says which). */
  readonly clusterId?: string;
  readonly tls?: TransportTlsOptions;
  readonly secret?: string;
  /** The whole exchange, connecting included. Default 10 s (the seed may consult a leader). */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
}

export type JoinResult =
  | { readonly ok: true; readonly clusterId: string; readonly acceptor: NodeId; readonly info?: Uint8Array }
  | { readonly ok: false; readonly error: HandshakeError };

/** Ask the node at `seed` to admit this one. Never rejects for a refusal or a network failure:
 *  those are `{ ok: false, error }` with a typed reason (Unreachable when the seed cannot be
 *  reached); bad options throw a RangeError. */
export function requestJoin(opts: JoinOptions): Promise<JoinResult> {
  const sec = prepareSecurity({ tls: opts.tls, secret: opts.secret });
  const seed = parseAddress(opts.seed);
  parseAddress(opts.address);
  const presented = opts.clusterId ?? '';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const log = (opts.logger ?? pino({ level: 'silent' })).child({ module: 'join', seed: opts.seed });
  const encoder = new FrameEncoder({ maxFrameBytes: HANDSHAKE_MAX_FRAME_BYTES });
  const decoder = new FrameDecoder({ maxFrameBytes: HANDSHAKE_MAX_FRAME_BYTES });
  const auth = sec.secret !== null ? newAuthSlot() : null;
  const join: JoinSlot = { v: JOIN_VERSION, address: opts.address, labels: { ...(opts.labels ?? {}) } };

  return new Promise<JoinResult>((resolve) => {
    let stage: 'hello' | 'ok' | 'answer' = 'hello';
    let acceptor: NodeId | null = null;
    let transcript: AuthTranscript | null = null;
    let connected = false;
    let settled = false;
    const socket: net.Socket =
      sec.tls === null
        ? net.connect({ host: seed.host, port: seed.port })
        : tls.connect({
            host: seed.host,
            port: seed.port,
            secureContext: sec.tls.context,
            rejectUnauthorized: true,
            // The acceptor's id is learnt from its hello; its certificate is checked against it then.
            checkServerIdentity: () => undefined,
          });
    const finish = (r: JoinResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (r.ok) log.info({ clusterId: r.clusterId, acceptor: r.acceptor }, 'join admitted');
      else log.warn({ reason: r.error.reason, detail: r.error.detail }, 'join failed');
      resolve(r);
    };
    const fail = (reason: HandshakeReason, detail: string) =>
      finish({ ok: false, error: new HandshakeError(reason, 'dial', detail, acceptor, opts.seed) });
    const timer = setTimeout(() => fail('HandshakeTimeout', `no join answer within ${timeoutMs} ms`), timeoutMs);

    socket.once(sec.tls === null ? 'connect' : 'secureConnect', () => {
      connected = true;
      socket.setNoDelay(true);
      socket.write(
        encoder.encodeControl({ ...makeHello(presented, opts.nodeId, HANDSHAKE_MAX_FRAME_BYTES, auth, join) }),
      );
    });
    socket.once('connect', () => (connected = true));
    socket.on('error', (err: Error & { code?: string }) =>
      fail(
        sec.tls !== null && connected ? 'TlsFailed' : 'Unreachable',
        `${err.code ?? 'error'}: ${err.message}`.slice(0, 200),
      ),
    );
    socket.on('close', () => {
      if (!connected) fail('Unreachable', 'connection closed before it was established');
      else if (sec.tls !== null && stage === 'hello')
        fail('TlsFailed', 'connection closed during the handshake (our certificate rejected by the seed?)');
      else if (stage === 'hello') fail('Refused', 'connection closed without a reply (the seed requires TLS?)');
      // Authenticated, then closed with no answer: the seed went away or gave up deciding (its
      // node stopped, or the request timed out). Nothing was refused: retry, through another member.
      else fail('NotReady', 'connection closed before the join answer (the seed stopped or timed out): retry');
    });
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      for (;;) {
        if (settled) return;
        const r = decoder.next();
        if (r === null) return;
        onFrame(r);
      }
    });

    function onFrame(r: DecodeResult): void {
      if (r.kind === 'error') {
        fail('BadHandshake', r.error.message);
        return;
      }
      if (r.kind !== 'control') {
        fail('BadHandshake', 'data frame in a join handshake');
        return;
      }
      const body = r.body;
      if (stage === 'hello') {
        const c = checkAcceptorReply(body, {
          clusterId: presented,
          peer: null,
          self: opts.nodeId,
          secret: sec.secret !== null,
        });
        if (!c.ok) {
          fail(c.reason, c.detail);
          return;
        }
        acceptor = c.hello.nodeId;
        if (sec.tls !== null) {
          const bad = certMismatch(socket, acceptor);
          if (bad !== null) {
            fail('CertMismatch', `"${acceptor}" answered but its ${bad}`);
            return;
          }
        }
        if (sec.secret === null) {
          stage = 'answer';
          return;
        }
        transcript = {
          clusterId: presented,
          dialer: opts.nodeId,
          acceptor,
          dialerNonce: auth!.nonce,
          acceptorNonce: c.hello.auth!.nonce,
        };
        stage = 'ok';
        socket.write(encoder.encodeControl({ ...makeProofFrame('auth', authProof(sec.secret, 'dialer', transcript)) }));
        return;
      }
      if (stage === 'ok') {
        const c = checkProofFrame(body, 'ok', acceptor!);
        if (!c.ok) {
          fail(c.reason, c.detail);
          return;
        }
        if (!verifyProof(sec.secret!, 'acceptor', transcript!, c.proof)) {
          fail('AuthFailed', `"${acceptor}" did not prove the cluster secret`);
          return;
        }
        stage = 'answer';
        return;
      }
      const c = checkJoined(body, acceptor!);
      if (!c.ok) {
        fail(c.reason, c.detail);
        return;
      }
      if (presented !== '' && c.clusterId !== presented) {
        fail('ClusterMismatch', `admitted to cluster "${c.clusterId}", expected "${presented}"`);
        return;
      }
      finish(
        c.info === undefined
          ? { ok: true, clusterId: c.clusterId, acceptor: acceptor! }
          : { ok: true, clusterId: c.clusterId, acceptor: acceptor!, info: c.info },
      );
    }
  });
}
