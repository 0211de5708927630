// The ranks of a job meet at rank 0's TCPStore. The meeting runs in small steps on the event loop,
// never one long native wait, so a stop request (a signal, the launcher) ends a rank still
// waiting here within a poll interval. Every failure names its cause and its fix and reaches every
// rank: the rank that gives up writes why under ABORT, the others poll for it and leave with that
// message; rank 0, which hosts the store, keeps it up a moment once any rank gave up, so that the others
// can read why. Before any collective connection is tried, each rank checks what every rank
// published (world size, processes per node, collective address), so a misconfigured node fails
// the whole job at once instead of a connect that waits out its timeout.
import * as os from 'os';
import { DistEnv } from './env';
import { TCPStore } from './group';
import { Binding, explainConnectError, isLoopback, probe } from './address';

const KEY = 'soco/rdzv/';
const ABORT = `${KEY}abort`;
const ABORT_SEEN = `${KEY}abort-seen`;
const JOINED = `${KEY}joined`;
const memberKey = (rank: number): string => `${KEY}member/${rank}`;
const claimKey = (rank: number): string => `${KEY}claim/${rank}`;

/** How often a waiting rank looks at the store and at its stop request. */
export const POLL_MS = 200;
/** Bound on one store operation: a master that goes silent fails within it (or the rendezvous timeout). */
const STORE_OP_TIMEOUT_MS = 30_000;
const opTimeout = (o: RendezvousOptions): number => Math.min(STORE_OP_TIMEOUT_MS, o.timeoutMs);
/** How long rank 0 keeps the store up after giving up, for the others to read why. */
const LINGER_MS = 3000;

export class RendezvousError extends Error {
  override name = 'RendezvousError';
  /**
   * interrupted: a stop request ended the rendezvous (nothing failed; exit 130). blocked: a store
   * operation is still waiting for an answer on a libuv thread, and a process does not exit while
   * one is (the caller must end it with dist.exitNow).
   */
  constructor(message: string, readonly interrupted = false, readonly blocked = false) {
    super(message);
  }
}

/** What each rank publishes at the rendezvous. */
export interface Member {
  rank: number;
  node: number;
  worldSize: number;
  localWorldSize: number;
  host: string;
  pid: number;
  masterAddr: string;
  /** Where its collectives listen, and why there. */
  address: string;
  iface: string | null;
  source: Binding['source'];
}

export interface RendezvousOptions {
  layout: DistEnv;
  binding: Binding;
  timeoutMs: number;
  /** Why this rank must leave now (a signal, the launcher, the caller), or null. */
  stopReason: () => string | null;
  /** Progress lines (the node's local rank 0 prints them). */
  log: (line: string) => void;
  /**
   * Set when the launcher's agent on node 0 already hosts a store on the master port (torchrun's
   * TORCHELASTIC_USE_AGENT_STORE): rank 0 joins it as a client too, and every key lives under
   * this prefix (the launcher's restart attempt), as in PyTorch's env:// rendezvous.
   */
  agentStore: string | null;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const plural = (n: number, word: string): string => `${word}${n === 1 ? '' : 's'}`;

/**
 * What is wrong with the job's layout as the members describe it, or null. Pure: every rank
 * computes the same answer from the same members, so all of them fail with the same message.
 */
export function checkMembers(members: Member[]): string | null {
  const first = members[0];
  for (const m of members) {
    if (m.localWorldSize !== first.localWorldSize)
      return `node ${m.node} runs ${m.localWorldSize} ${plural(m.localWorldSize, 'process')} (--nproc-per-node) but node ${first.node} runs ${first.localWorldSize}: ` +
        'start every node with the same --nproc-per-node';
    if (m.worldSize !== first.worldSize)
      return `node ${m.node} was started for ${m.worldSize} ranks (${m.worldSize / m.localWorldSize} nodes x ${m.localWorldSize}) but node ${first.node} ` +
        `for ${first.worldSize} (${first.worldSize / first.localWorldSize} x ${first.localWorldSize}): start every node with the same --nnodes`;
  }
  // Nodes that all listen on loopback addresses share one machine (a loopback --master-addr reaches
  // only its own); a mix means some node advertises an address that the others cannot reach.
  const lo = members.find((m) => isLoopback(m.address));
  if (!lo || members.every((m) => m.node === lo.node || isLoopback(m.address))) return null;
  const [cause, fix] = lo.source === 'route'
    ? [`its --master-addr ${lo.masterAddr} is (or resolves there to) a loopback address`, "start every node with --master-addr set to node 0's address on the network that joins the nodes"]
    : [`${lo.source} names interface ${lo.iface}`, `on node ${lo.node}, unset ${lo.source} (soco-train then uses the interface that routes to --master-addr) or name the interface that reaches the other nodes`];
  return `node ${lo.node} (rank ${lo.rank}, host ${lo.host}) would take collective connections on the loopback address ${lo.address}, ` +
    `which the other nodes cannot reach, because ${cause}. Fix: ${fix}`;
}

/** "1, 3-5" */
function ranges(xs: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length;) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    out.push(j > i ? `${xs[i]}-${xs[j]}` : `${xs[i]}`);
    i = j + 1;
  }
  return out.join(', ');
}

/** The message of a rendezvous that timed out without the ranks in `missing`. */
export function missingMessage(missing: number[], worldSize: number, localWorldSize: number, timeoutMs: number, master: string): string {
  const nodes = [...new Set(missing.map((r) => Math.floor(r / localWorldSize)))];
  const one = nodes.length === 1;
  return `the rendezvous timed out after ${timeoutMs / 1000} s: ${plural(nodes.length, 'node')} ${ranges(nodes)} never joined ` +
    `(${plural(missing.length, 'rank')} ${ranges(missing)} missing, ${worldSize - missing.length} of ${worldSize} joined). ` +
    `Start ${one ? 'it' : 'them'} with the same command and --node-rank ${nodes.join(' / ')}, able to reach ${master}; ` +
    `if ${one ? 'it was' : 'they were'} started, ${one ? 'its' : 'their'} own log says why ${one ? 'it' : 'they'} did not join`;
}

/**
 * A store operation, bounded. c10d's client waits for an answer without limit (torch 2.x's client
 * also when it connects: its handshake has no timeout), so an operation that gets none within
 * opTimeout (a master gone silent, or another program on its port) fails the rendezvous, and a
 * stop request ends the wait (unless `interruptible` is false, as when telling the others why
 * this rank leaves); either way the operation is left blocked (RendezvousError.blocked).
 */
function bounded<T>(run: () => Promise<T>, o: RendezvousOptions, where: string, interruptible: boolean): Promise<T> {
  const { masterAddr, masterPort } = o.layout;
  return new Promise<T>((resolve, reject) => {
    const t0 = Date.now();
    const watch = setInterval(() => {
      // A stop request first lets an operation that is merely slow finish (then the others are told why).
      const stop = interruptible && Date.now() - t0 > 1000 ? o.stopReason() : null;
      if (stop) reject(new RendezvousError(`${where} left the rendezvous: ${stop}`, true, true));
      else if (Date.now() - t0 > opTimeout(o))
        reject(new RendezvousError(`the rendezvous store at ${masterAddr}:${masterPort} does not answer ` +
          '(node 0 has gone silent, or another program holds that port there)', false, true));
      else return;
      clearInterval(watch);
    }, POLL_MS);
    run().then(resolve, reject).finally(() => clearInterval(watch));
  });
}

/** The store's operations, each bounded. */
class BoundedStore {
  /** An abandoned operation still waits on a libuv thread. */
  blocked = false;

  constructor(private readonly store: TCPStore, private readonly o: RendezvousOptions, private readonly where: string) {}

  add(key: string, delta: number, interruptible = true): Promise<number> { return this.op(() => this.store.add(key, delta), interruptible); }
  set(key: string, value: string, interruptible = true): Promise<void> { return this.op(() => this.store.set(key, value), interruptible); }
  check(key: string, interruptible = true): Promise<boolean> { return this.op(() => this.store.check([key]), interruptible); }
  get(key: string, interruptible = true): Promise<string> {
    return this.op(async () => (await this.store.get(key, opTimeout(this.o))).toString(), interruptible);
  }

  private async op<T>(run: () => Promise<T>, interruptible: boolean): Promise<T> {
    try {
      return await bounded(run, this.o, this.where, interruptible);
    } catch (err) {
      if (err instanceof RendezvousError && err.blocked) this.blocked = true;
      throw err;
    }
  }
}

/** A completed (or failing) meeting of the ranks on the store. */
export class Rendezvous {
  members: Member[] = [];

  private readonly kv: BoundedStore;
  /** Counted in JOINED (a rank refused at its claim is not). */
  private joined = false;

  private constructor(readonly store: TCPStore, readonly me: Member, private readonly o: RendezvousOptions) {
    this.kv = new BoundedStore(store, o, this.where);
  }

  /** Meets every rank of the job; rejects with a RendezvousError that names the cause and the fix. */
  static async join(o: RendezvousOptions): Promise<Rendezvous> {
    const { layout, binding } = o;
    const me: Member = {
      rank: layout.rank, node: layout.nodeRank, worldSize: layout.worldSize, localWorldSize: layout.localWorldSize,
      host: os.hostname(), pid: process.pid, masterAddr: layout.masterAddr, address: binding.address, iface: binding.iface, source: binding.source,
    };
    const deadline = Date.now() + o.timeoutMs;
    const r = new Rendezvous(await connect(o, deadline), me, o);
    try {
      await r.meet(deadline);
    } catch (err) {
      if (err instanceof RendezvousError) throw err;
      throw new RendezvousError(`lost the rendezvous store at ${layout.masterAddr}:${layout.masterPort} ` +
        `(node 0 ended or became unreachable, or another program holds that port there): ${(err as Error).message}`);
    }
    return r;
  }

  private get where(): string { return `node ${this.me.node} (rank ${this.me.rank})`; }

  private async meet(deadline: number): Promise<void> {
    const { kv, me } = this;
    if ((await kv.add(claimKey(me.rank), 1)) > 1) {
      const first = await this.member(me.rank);
      return this.fail(`rank ${me.rank} joined twice: from node ${first.node} (host ${first.host}, pid ${first.pid}) and from node ${me.node} ` +
        `(host ${me.host}, pid ${me.pid}): each node needs its own --node-rank in [0, --nnodes)`);
    }
    await kv.set(memberKey(me.rank), JSON.stringify(me));
    const there = await kv.add(JOINED, 1);
    this.joined = true;
    if (this.o.layout.localRank === 0) this.o.log(`soco-train: node ${me.node}: at the rendezvous (${there} of ${me.worldSize} ranks there)`);
    let checkedMaster = me.rank === 0;
    for (;;) {
      await this.throwIfAborted();
      const stop = this.o.stopReason();
      if (stop) return this.fail(`${this.where} left the rendezvous: ${stop}`, true);
      // Against rank 0 at once: a node started for another world size would otherwise wait for
      // ranks that never come, or be waited for.
      if (!checkedMaster && (await kv.check(memberKey(0)))) {
        checkedMaster = true;
        const problem = checkMembers([await this.member(0), me]);
        if (problem) return this.fail(problem);
      }
      const joined = await kv.add(JOINED, 0);
      if (joined >= me.worldSize) {
        const members: Member[] = [];
        for (let r = 0; r < me.worldSize; r++) members.push(await this.member(r));
        const problem = checkMembers(members) ?? (joined > me.worldSize
          ? `${joined} ranks joined a job of ${me.worldSize}: a node was started with a larger --nnodes or --nproc-per-node than node 0` : null);
        if (problem) return this.fail(problem);
        this.members = members;
        return;
      }
      if (Date.now() >= deadline) {
        const missing: number[] = [];
        for (let r = 0; r < me.worldSize; r++) if (!(await kv.check(memberKey(r)))) missing.push(r);
        return this.fail(missingMessage(missing, me.worldSize, me.localWorldSize, this.o.timeoutMs, `${me.masterAddr}:${this.o.layout.masterPort}`));
      }
      await sleep(POLL_MS);
    }
  }

  private async member(rank: number): Promise<Member> {
    return JSON.parse(await this.kv.get(memberKey(rank))) as Member;
  }

  /** Why another rank gave up, or null (does not wait, except rank 0: see linger). */
  async abortMessage(): Promise<string | null> {
    if (!(await this.kv.check(ABORT))) return null;
    const why = await this.kv.get(ABORT);
    await this.kv.add(ABORT_SEEN, 1);
    await this.linger();
    return why;
  }

  private async throwIfAborted(): Promise<void> {
    const why = await this.abortMessage();
    if (why !== null) throw new RendezvousError(`the job ended at its start: ${why}`);
  }

  /** Tells every rank why this one gives up (rank 0 then waits until they have read it). Never throws. */
  async tell(message: string): Promise<void> {
    try {
      if (await this.kv.check(ABORT, false)) return; // the first reason stands
      await this.kv.set(ABORT, message, false);
      if (this.joined) await this.kv.add(ABORT_SEEN, 1, false);
      await this.linger();
    } catch { /* the store is gone: the others learn from its absence */ }
  }

  /**
   * Rank 0 hosts the store, so once the job is ending (its own reason or another rank's) it keeps
   * the store up until every rank that joined has read the reason, or LINGER_MS: leaving at once
   * would leave a slower rank with "lost the store" instead of the cause. Never throws.
   */
  private async linger(): Promise<void> {
    if (this.me.rank !== 0) return;
    try {
      const joined = await this.kv.add(JOINED, 0, false);
      const until = Date.now() + LINGER_MS;
      while (Date.now() < until && (await this.kv.add(ABORT_SEEN, 0, false)) < joined) await sleep(POLL_MS / 2);
    } catch { /* the store is gone */ }
  }

  /** tell(), then reject with the message. */
  async fail(message: string, interrupted = false): Promise<never> {
    await this.tell(message);
    throw new RendezvousError(message, interrupted, this.blocked);
  }

  /** A store operation was abandoned (see RendezvousError.blocked). */
  get blocked(): boolean { return this.kv.blocked; }
}

/** Rank 0 hosts the store (unless an agent does); the others wait (interruptibly) until it answers, then connect. */
async function connect(o: RendezvousOptions, deadline: number): Promise<TCPStore> {
  const { masterAddr: host, masterPort: port, rank, nodeRank } = o.layout;
  if (rank === 0 && o.agentStore === null) {
    try {
      return await TCPStore.create({ host, port, isServer: true, timeoutMs: opTimeout(o) });
    } catch (err) {
      throw new RendezvousError(`node 0 cannot host the rendezvous: ${(err as Error).message}`);
    }
  }
  let last = '';
  for (;;) {
    const stop = o.stopReason();
    if (stop) throw new RendezvousError(`node ${nodeRank} (rank ${rank}) left the rendezvous: ${stop}`, true);
    const left = deadline - Date.now();
    if (left <= 0) throw new RendezvousError(`node 0 (the rendezvous host) did not answer within ${o.timeoutMs / 1000} s: ${explainConnectError(last, host, port)}`);
    // 4 s: past the 3 s in which an unanswered ARP turns into "host unreachable".
    const wait = Math.min(left, 4000);
    const code = await probe(host, port, wait, () => o.stopReason() !== null);
    if (code === null) break;
    // An attempt cut short by the deadline says less than the one before it.
    if (!(code === 'ETIMEDOUT' && wait < 4000 && last)) last = code;
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
  return bounded(() => TCPStore.create({ host, port, isServer: false, timeoutMs: opTimeout(o), prefix: o.agentStore ?? '' }),
    o, `node ${nodeRank} (rank ${rank})`, true);
}
