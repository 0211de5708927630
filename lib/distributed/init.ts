// A worker's entry into the job: read the layout from the environment, pick the address its
// collectives use (the route to the master), meet the other ranks at the TCPStore that rank 0
// hosts (lib/distributed/rendezvous.ts) and form the default process group.
import { cuda, setNumThreads, getNumThreads } from '../torch';
import { native } from '../torch/native';
import { Binding, Route, bindingFor, routeTo } from './address';
import { DistEnv, DistEnvError, readDistEnv } from './env';
import { Backend, DEFAULT_TIMEOUT_MS, GroupOptions, ProcessGroup, TCPStore } from './group';
import { Member, POLL_MS, Rendezvous, RendezvousError } from './rendezvous';
import { INTERRUPTED_EXIT_CODE, StopSignal } from './stop';

export interface DistContext extends DistEnv {
  backend: Backend;
  /** This rank's device: 'cuda:LOCAL_RANK' with NCCL, else 'cpu'. */
  device: string;
  store: TCPStore;
  group: ProcessGroup;
  /** Every rank as it introduced itself at the rendezvous (node, host, collective address). */
  members: Member[];
  /** Agreed stop (Ctrl-C, SIGTERM, launcher): see StopSignal.agreed(). */
  stop: StopSignal;
  /** rank === 0: the rank that logs and writes checkpoints. */
  isMain: boolean;
  /** Releases the group and the signal handlers. */
  destroy(): void;
}

export interface InitOptions {
  env?: Record<string, string | undefined>;
  /** Default: SOCO_DIST_BACKEND, else nccl when this build and machine have CUDA, else gloo. */
  backend?: Backend;
  /** Collective timeout. Default: SOCO_DIST_TIMEOUT (seconds), else 10 minutes. */
  timeoutMs?: number;
  /** How long a rank waits for all the others at the start. Default: the collective timeout. */
  rendezvousTimeoutMs?: number;
  /** Install the stop handlers (SIGINT, SIGTERM, launcher messages). Default true. */
  handleSignals?: boolean;
  /** Aborting it ends a rendezvous still in progress (as a signal does). */
  signal?: AbortSignal;
  /** Where the node's startup line goes (default stderr). */
  log?: (line: string) => void;
}

/** True in a process started by launch() (so the CLI does not launch again). */
export function isLaunchedWorker(env: Record<string, string | undefined> = process.env): boolean {
  return env.SOCO_DIST_WORKER === '1';
}

function chooseBackend(o: InitOptions, env: Record<string, string | undefined>): Backend {
  const b = o.backend ?? env.SOCO_DIST_BACKEND ?? (native.dist.backends.nccl && cuda.isAvailable() ? 'nccl' : 'gloo');
  if (b !== 'gloo' && b !== 'nccl') throw new DistEnvError(`SOCO_DIST_BACKEND must be 'gloo' or 'nccl', got '${b}'`);
  return b;
}

function timeoutFrom(o: InitOptions, env: Record<string, string | undefined>): number {
  if (o.timeoutMs !== undefined) return o.timeoutMs;
  const s = env.SOCO_DIST_TIMEOUT;
  if (s === undefined || s === '') return DEFAULT_TIMEOUT_MS;
  const v = Number(s);
  if (!(v > 0)) throw new DistEnvError(`SOCO_DIST_TIMEOUT must be a positive number of seconds, got '${s}'`);
  return v * 1000;
}

/**
 * A worker of our launcher ends with it, even when the launcher is killed with SIGKILL: the worker
 * runs in its own process group, so nothing else would reach it.
 */
function bindToLauncher(env: Record<string, string | undefined>): void {
  const pid = env.SOCO_DIST_LAUNCHER_PID;
  if (pid && !native.dist.dieWithParent(Number(pid))) throw new DistEnvError(`the launcher (pid ${pid}) has already exited`);
}

/** The node's startup line: where it meets the others, and which address its collectives use and why. */
function startupLine(layout: DistEnv, backend: Backend, route: Route, b: Binding, timeoutMs: number): string {
  const first = layout.nodeRank * layout.localWorldSize;
  const ranks = layout.localWorldSize > 1 ? `ranks ${first}-${first + layout.localWorldSize - 1}` : `rank ${first}`;
  const why = b.source === 'route' ? `the route to --master-addr ${layout.masterAddr}` : `from ${b.source}`;
  return `soco-train: node ${layout.nodeRank} (${ranks} of ${layout.worldSize}): ${backend} collectives on ${b.address || '?'} ` +
    `(interface ${b.iface ?? '?'}, ${why}); rendezvous at ${route.masterIp}:${layout.masterPort}, waiting up to ${timeoutMs / 1000} s for every node`;
}

/**
 * Ends the process now, with the message: for a rank that must leave while a native wait (Gloo's
 * connect, a store operation without answer) holds a libuv thread, which a normal exit would wait for.
 */
function endNow(where: string, message: string, code: number): never {
  process.stderr.write(`soco-train: ${where}: ${message}\n`);
  native.dist.exitNow(code);
  throw new Error('unreachable: exitNow returned');
}

/**
 * Forms the group once every rank is known. Gloo's connect cannot be cancelled, so a rank told to
 * leave meanwhile (a stop request, or another rank that gave up) tells why and ends the process.
 */
async function formGroup(rdzv: Rendezvous, o: GroupOptions, stopReason: () => string | null, where: string): Promise<ProcessGroup> {
  let formed = false;
  const forming = ProcessGroup.create(o).finally(() => { formed = true; });
  while (!formed) {
    await Promise.race([forming.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, POLL_MS))]);
    if (formed) break;
    const stop = stopReason();
    if (stop) {
      const why = `node ${rdzv.me.node} (rank ${rdzv.me.rank}) left while the process group was forming: ${stop}`;
      await rdzv.tell(why);
      endNow(where, why, INTERRUPTED_EXIT_CODE);
    }
    let other: string | null;
    try {
      other = await rdzv.abortMessage();
    } catch (err) {
      return endNow(where, (err as Error).message, 1);
    }
    if (other !== null) endNow(where, `the job ended at its start: ${other}`, 1);
  }
  try {
    return await forming;
  } catch (err) {
    return rdzv.fail((err as Error).message);
  }
}

/**
 * Joins the job described by the environment (torchrun or Slurm variables; see readDistEnv).
 * Resolves to null when the process is not part of a multi-process job (then train as usual).
 * Rejects with a RendezvousError (its message names the cause and the fix) when the job cannot
 * start; every other rank then ends too. A stop request during the rendezvous rejects at once
 * (error.interrupted).
 */
export async function initFromEnv(o: InitOptions = {}): Promise<DistContext | null> {
  const env = o.env ?? process.env;
  const layout = readDistEnv(env);
  if (!layout || layout.worldSize === 1) return null;
  bindToLauncher(env);
  const backend = chooseBackend(o, env);
  const timeoutMs = timeoutFrom(o, env);
  const rendezvousTimeoutMs = o.rendezvousTimeoutMs ?? timeoutMs;
  let device = 'cpu';
  if (backend === 'nccl') {
    const n = cuda.deviceCount();
    if (layout.localRank >= n)
      throw new DistEnvError(`rank ${layout.rank}: LOCAL_RANK ${layout.localRank} needs CUDA device ${layout.localRank}, but ${n} are visible`);
    device = `cuda:${layout.localRank}`;
  } else if (env.OMP_NUM_THREADS === undefined && layout.localWorldSize > 1) {
    // Workers of one node share its cores (torchrun sets OMP_NUM_THREADS=1 for the same reason).
    setNumThreads(Math.max(1, Math.floor(getNumThreads() / layout.localWorldSize)));
  }
  const where = `rank ${layout.rank} of ${layout.worldSize}`;
  const stop = new StopSignal(layout.rank, o.handleSignals ?? true);
  const stopReason = (): string | null => stop.reason ?? (o.signal?.aborted ? String(o.signal.reason ?? 'aborted') : null);
  try {
    const route = await routeTo(layout.masterAddr, layout.masterPort);
    const binding = bindingFor(backend, route, env);
    const log = o.log ?? ((m: string) => { process.stderr.write(`${m}\n`); });
    if (layout.localRank === 0) log(startupLine(layout, backend, route, binding, rendezvousTimeoutMs));
    const agentStore = env.TORCHELASTIC_USE_AGENT_STORE === 'True' ? `/worker/attempt_${env.TORCHELASTIC_RESTART_COUNT ?? '0'}` : null;
    const rdzv = await Rendezvous.join({ layout, binding, timeoutMs: rendezvousTimeoutMs, stopReason, log, agentStore });
    const multiNode = layout.worldSize > layout.localWorldSize;
    const group = await formGroup(rdzv, {
      store: rdzv.store, rank: layout.rank, size: layout.worldSize, backend, timeoutMs,
      device: backend === 'nccl' ? layout.localRank : undefined,
      // An interface variable is read by Gloo / NCCL themselves.
      glooHost: binding.source === 'route' ? binding.address : '',
      ncclIfname: binding.source === 'route' && multiNode ? binding.iface ?? '' : '',
      peers: { addresses: rdzv.members.map((m) => m.address), nodes: rdzv.members.map((m) => m.node) },
    }, stopReason, where);
    return {
      ...layout, backend, device, store: rdzv.store, group, members: rdzv.members, stop, isMain: layout.rank === 0,
      destroy: () => { stop.dispose(); group.destroy(); },
    };
  } catch (err) {
    stop.dispose();
    if (!(err instanceof RendezvousError))
      throw new RendezvousError(`${where}: cannot join the job at ${layout.masterAddr}:${layout.masterPort}: ${(err as Error).message}`);
    if (err.blocked) endNow(where, err.message, err.interrupted ? INTERRUPTED_EXIT_CODE : 1);
    throw new RendezvousError(`${where}: ${err.message}`, err.interrupted);
  }
}
