// A worker's entry into the job: read the layout from the environment, meet the other ranks at
// the TCPStore that rank 0 hosts, and form the default process group.
import { cuda, setNumThreads, getNumThreads } from '../torch';
import { native } from '../torch/native';
import { DistEnv, DistEnvError, readDistEnv } from './env';
import { Backend, DEFAULT_TIMEOUT_MS, ProcessGroup, TCPStore } from './group';
import { StopSignal } from './stop';

export interface DistContext extends DistEnv {
  backend: Backend;
  /** This rank's device: 'cuda:LOCAL_RANK' with NCCL, else 'cpu'. */
  device: string;
  store: TCPStore;
  group: ProcessGroup;
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
  /** Collective and rendezvous timeout. Default: SOCO_DIST_TIMEOUT (seconds), else 10 minutes. */
  timeoutMs?: number;
  /** Install the stop handlers (SIGINT, SIGTERM, launcher messages). Default true. */
  handleSignals?: boolean;
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
 * Joins the job described by the environment (torchrun or Slurm variables; see readDistEnv).
 * Resolves to null when the process is not part of a multi-process job (then train as usual).
 */
export async function initFromEnv(o: InitOptions = {}): Promise<DistContext | null> {
  const env = o.env ?? process.env;
  const layout = readDistEnv(env);
  if (!layout || layout.worldSize === 1) return null;
  const backend = chooseBackend(o, env);
  const timeoutMs = timeoutFrom(o, env);
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
  const isServer = layout.rank === 0;
  let store: TCPStore;
  try {
    store = await TCPStore.create({ host: layout.masterAddr, port: layout.masterPort, worldSize: layout.worldSize, isServer, timeoutMs });
  } catch (err) {
    throw new Error(`${where}: rendezvous at ${layout.masterAddr}:${layout.masterPort} failed: ${(err as Error).message}`);
  }
  const group = await ProcessGroup.create({ store, rank: layout.rank, size: layout.worldSize, backend, timeoutMs, device: backend === 'nccl' ? layout.localRank : undefined });
  const stop = new StopSignal(layout.rank, o.handleSignals ?? true);
  return {
    ...layout, backend, device, store, group, stop, isMain: layout.rank === 0,
    destroy: () => { stop.dispose(); group.destroy(); },
  };
}
