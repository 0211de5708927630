// TCPStore and process groups over c10d (native/dist.cc). Every collective returns a Promise: the
// wait runs on a libuv thread, so the event loop stays free (signals, IPC, logging) while ranks
// exchange data. Errors and timeouts reject (never throw) with a TorchError whose message names
// the rank.
import { native } from '../torch/native';
import { Tensor } from '../torch';
import { w } from '../torch/tensor';

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** PyTorch's default for NCCL groups; long enough for a checkpoint write on rank 0 while others wait. */
export const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** Which backends this build of the addon has. */
export function availableBackends(): { gloo: boolean; nccl: boolean } {
  return { ...native.dist.backends };
}

function checkTimeout(ms: number, what: string): number {
  if (typeof ms !== 'number' || !(ms > 0) || !Number.isFinite(ms)) throw new RangeError(`${what}: timeoutMs must be a positive number, got ${ms}`);
  return ms;
}

export interface StoreOptions {
  host: string;
  /** 0 on the server picks a free port (read it back from .port). */
  port: number;
  /**
   * Rank 0 hosts the store; with worldSize, its creation resolves once that many ranks have
   * connected. Without (or 0), at once: for a rendezvous of one's own on the store.
   */
  worldSize?: number;
  isServer: boolean;
  /** Connection timeout, and the default wait of get(). */
  timeoutMs?: number;
  /** Every key lives under this prefix (a store shared with others, e.g. torchrun's agent store). */
  prefix?: string;
}

/** c10d's TCPStore: a small key-value store every rank reaches; used for rendezvous. */
export class TCPStore {
  private constructor(readonly handle: unknown, readonly host: string) {}

  static async create(o: StoreOptions): Promise<TCPStore> {
    const timeout = checkTimeout(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'TCPStore.create');
    const h = await native.dist.createStore(o.host, o.port, o.worldSize ?? 0, o.isServer, timeout, o.prefix ?? '');
    return new TCPStore(h, o.host);
  }

  get port(): number { return native.dist.storePort(this.handle); }

  async set(key: string, value: Uint8Array | string): Promise<void> {
    return native.dist.storeSet(this.handle, key, typeof value === 'string' ? Buffer.from(value) : value);
  }

  /** Waits up to timeoutMs for the key to be set, then returns its value. */
  async get(key: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Buffer> {
    return native.dist.storeGet(this.handle, key, checkTimeout(timeoutMs, 'TCPStore.get'));
  }

  /** Atomically adds delta to the integer at key (created as 0); returns the new value. */
  async add(key: string, delta: number): Promise<number> { return native.dist.storeAdd(this.handle, key, delta); }

  /** Whether every key is set (does not wait). */
  async check(keys: string[]): Promise<boolean> { return native.dist.storeCheck(this.handle, keys); }
}

export interface GroupOptions {
  store: TCPStore;
  rank: number;
  size: number;
  backend: Backend;
  /** Default for every collective of the group (and Gloo's/NCCL's own timeout). */
  timeoutMs?: number;
  /** Keeps the rendezvous keys of several groups on one store apart. */
  name?: string;
  /**
   * Address Gloo binds to. Default: 127.0.0.1 when the store is on the loopback, else this
   * machine's hostname (PyTorch's default). GLOO_SOCKET_IFNAME overrides both.
   */
  glooHost?: string;
  /** CUDA device index of this rank (NCCL). */
  device?: number;
  /** Interface NCCL's sockets use when NCCL_SOCKET_IFNAME is not set (default: NCCL's choice). */
  ncclIfname?: string;
  /** Each rank's collective address and node, so an error about a lost peer names it. */
  peers?: { addresses: string[]; nodes: number[] };
}

export interface CollectiveOptions { timeoutMs?: number }

/** A c10d process group: Gloo (CPU tensors) or NCCL (CUDA tensors, CUDA builds only). */
export class ProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly backend: Backend;
  readonly timeoutMs: number;
  /** Device the group's tensors live on: 'cpu' (Gloo) or this rank's 'cuda:N' (NCCL). */
  readonly device: string;
  private handle_: unknown;

  private constructor(handle: unknown, o: { rank: number; size: number; backend: Backend; timeoutMs: number; device: string }) {
    this.handle_ = handle;
    this.rank = o.rank;
    this.size = o.size;
    this.backend = o.backend;
    this.timeoutMs = o.timeoutMs;
    this.device = o.device;
  }

  /** Forms the group: resolves once every rank has joined (or rejects after timeoutMs). */
  static async create(o: GroupOptions): Promise<ProcessGroup> {
    const timeoutMs = checkTimeout(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'ProcessGroup.create');
    if (!Number.isInteger(o.size) || o.size < 1) throw new RangeError(`ProcessGroup.create: size must be a positive integer, got ${o.size}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.size) throw new RangeError(`ProcessGroup.create: rank must be an integer in [0, ${o.size - 1}], got ${o.rank}`);
    const loopback = /^(127\.|localhost$|::1$)/.test(o.store.host);
    const glooHost = o.glooHost ?? (loopback ? '127.0.0.1' : '');
    const h = await native.dist.createGroup(o.store.handle, `${o.name ?? 'default'}/`, o.rank, o.size, o.backend, timeoutMs, glooHost, o.device ?? -1,
      o.ncclIfname ?? '', o.peers ?? null);
    const device = o.backend === 'nccl' ? `cuda:${o.device ?? 0}` : 'cpu';
    return new ProcessGroup(h, { rank: o.rank, size: o.size, backend: o.backend, timeoutMs, device });
  }

  get handle(): unknown {
    if (this.handle_ === null) throw new Error(`ProcessGroup (rank ${this.rank} of ${this.size}): the group was destroyed`);
    return this.handle_;
  }

  /** True once a collective of this group failed or timed out; the group is then unusable. */
  get failed(): boolean { return this.handle_ !== null && native.dist.groupInfo(this.handle_).failed; }

  private timeout(o: CollectiveOptions | undefined, what: string): number {
    return checkTimeout(o?.timeoutMs ?? this.timeoutMs, `${what} (rank ${this.rank})`);
  }

  /** In place: t := op over all ranks of t. 'avg' divides the sum by the group size. */
  async allReduce(t: Tensor, op: ReduceOp = 'sum', o?: CollectiveOptions): Promise<void> {
    return native.dist.allReduce(this.handle, t.id, op, this.timeout(o, 'allReduce'));
  }

  /** In place: t := rank src's t. */
  async broadcast(t: Tensor, src = 0, o?: CollectiveOptions): Promise<void> {
    return native.dist.broadcast(this.handle, t.id, src, this.timeout(o, 'broadcast'));
  }

  /** Every rank's t (same shape everywhere), in rank order; new tensors owned by the caller. */
  async allGather(t: Tensor, o?: CollectiveOptions): Promise<Tensor[]> {
    const ids: number[] = await native.dist.allGather(this.handle, t.id, this.timeout(o, 'allGather'));
    return ids.map((id) => w(id));
  }

  /** Resolves when every rank has reached it. */
  async barrier(o?: CollectiveOptions): Promise<void> {
    return native.dist.barrier(this.handle, this.timeout(o, 'barrier'));
  }

  /** Releases the group now (it is also released when garbage collected). */
  destroy(): void {
    if (this.handle_ === null) return;
    native.dist.destroyGroup(this.handle_);
    this.handle_ = null;
  }
}
