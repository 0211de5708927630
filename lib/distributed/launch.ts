// The launcher behind `soco-train train --nproc-per-node N`: one worker process per device on this
// node, each the same command with torchrun's variables set. It watches them: the first worker
// that fails ends the job (the others are told to leave, then killed after a grace period) and
// the launcher reports that worker's exit code and last stderr lines. Ctrl-C (or SIGTERM) asks
// every worker to checkpoint and stop; a second one kills them. Workers die with the launcher,
// however it dies (each arms a parent-death signal; see initFromEnv).
import { ChildProcess, fork } from 'child_process';
import * as net from 'net';
import * as os from 'os';
import { Command, InvalidArgumentError } from 'commander';
import { DistEnvError, expandNodelist, slurmMaster } from './env';
import { ABORT_MESSAGE, INTERRUPTED_EXIT_CODE, STOP_MESSAGE } from './stop';

export interface LaunchOptions {
  /** Workers on this node (one per GPU). */
  nprocPerNode: number;
  /** Nodes in the job (default 1, or Slurm's node count when run as one Slurm task per node). */
  nnodes?: number;
  /** This node's index in [0, nnodes). */
  nodeRank?: number;
  /** Host of rank 0 (it serves the TCPStore). Default 127.0.0.1 on one node; required on several. */
  masterAddr?: string;
  /** Default: a free port on one node, 29500 on several (as torchrun). */
  masterPort?: number;
  /** Script the workers run (default: this process's script, i.e. the CLI itself). */
  script?: string;
  /** Its arguments (default: this process's). */
  args?: string[];
  /** Extra environment for the workers. */
  env?: Record<string, string | undefined>;
  execArgv?: string[];
  /** After a failure, how long the other workers get to leave before SIGKILL. Default 5000. */
  killGraceMs?: number;
  /** Stderr lines kept per worker for the failure report. Default 20. */
  tailLines?: number;
  /**
   * When the first worker to fail failed in a collective (a peer went away), how long to wait for
   * the worker that caused it, so the report names the cause. Default 2000.
   */
  settleMs?: number;
  /** Where the launcher's own messages go (default stderr). */
  log?: (message: string) => void;
  /** Forward SIGINT/SIGTERM of this process to the workers (default true). */
  handleSignals?: boolean;
}

export interface WorkerFailure {
  rank: number;
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  lastLines: string[];
}

export interface LaunchResult {
  /** What the launcher should exit with: the failed worker's code (128+signal), 130 when interrupted workers exited with it, else 0. */
  exitCode: number;
  /** The worker that ended the job (preferring one that did not just lose a peer). */
  failed: WorkerFailure | null;
  /** Every worker that failed on its own before the others were stopped, in exit order. */
  failures: WorkerFailure[];
  interrupted: boolean;
  /** The failure report that was logged, null when none. */
  message: string | null;
}

/** A TCP port that was free a moment ago on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function checkInt(v: number | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new RangeError(`launch: ${name} must be an integer in [${min}, ${max}], got ${v}`);
}

/** Node layout when the launcher itself runs as one Slurm task per node (srun --ntasks-per-node=1). */
function slurmNodes(env: Record<string, string | undefined>): { nnodes: number; nodeRank: number; masterAddr: string; masterPort: number } | null {
  const nnodes = Number(env.SLURM_JOB_NUM_NODES ?? env.SLURM_NNODES ?? '1');
  if (!env.SLURM_JOB_ID || !(nnodes > 1) || env.SLURM_NODEID === undefined) return null;
  const ntasks = Number(env.SLURM_NTASKS ?? NaN);
  if (ntasks !== nnodes)
    throw new DistEnvError(`under Slurm on ${nnodes} nodes with ${env.SLURM_NTASKS} tasks: run the launcher (--nproc-per-node) as one task per node ` +
      `(srun --ntasks-per-node=1 ...), or leave --nproc-per-node out and let srun start one task per GPU`);
  const { addr, port } = slurmMaster(env);
  return { nnodes, nodeRank: Number(env.SLURM_NODEID), masterAddr: addr, masterPort: port };
}

/** Our collective errors name the rank and backend; Gloo and NCCL name themselves. */
const COLLECTIVE_FAILURE = /rank \d+ of \d+ \((gloo|nccl)\)|gloo::|NCCL error|ProcessGroupNCCL/;

function lostPeer(f: WorkerFailure): boolean {
  return f.lastLines.some((l) => COLLECTIVE_FAILURE.test(l));
}

interface Worker {
  rank: number;
  child: ChildProcess;
  tail: string[];
  partial: string;
  done: boolean;
  code: number | null;
}

/** Starts the workers of this node and resolves when all have exited. */
export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  checkInt(o.nprocPerNode, 'nprocPerNode', 1, 1024);
  if (o.nprocPerNode === undefined) throw new RangeError('launch: nprocPerNode is required');
  const slurm = o.nnodes === undefined ? slurmNodes(process.env) : null;
  const nnodes = o.nnodes ?? slurm?.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? slurm?.nodeRank ?? 0;
  checkInt(nnodes, 'nnodes', 1);
  checkInt(nodeRank, 'nodeRank', 0, nnodes - 1);
  checkInt(o.masterPort, 'masterPort', 1, 65535);
  if (nnodes > 1 && !o.masterAddr && !slurm) throw new RangeError('launch: masterAddr (--master-addr) is required with more than one node');
  const masterAddr = o.masterAddr ?? slurm?.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? slurm?.masterPort ?? (nnodes === 1 ? await freePort(masterAddr) : 29500);
  const nproc = o.nprocPerNode;
  const worldSize = nnodes * nproc;
  const script = o.script ?? process.argv[1];
  const args = o.args ?? process.argv.slice(2);
  const grace = o.killGraceMs ?? 5000;
  const keep = o.tailLines ?? 20;
  const settleMs = o.settleMs ?? 2000;
  const log = o.log ?? ((m: string) => { process.stderr.write(`${m}\n`); });
  const threads = String(Math.max(1, Math.floor(os.cpus().length / nproc)));

  return new Promise<LaunchResult>((resolve) => {
    const workers: Worker[] = [];
    let failed: WorkerFailure | null = null;
    const failures: WorkerFailure[] = [];
    let settle: NodeJS.Timeout | null = null;
    let interrupted = false;
    let signals = 0;
    let killTimer: NodeJS.Timeout | null = null;
    const live = (): Worker[] => workers.filter((wk) => !wk.done);

    const tell = (wk: Worker, message: string): void => {
      if (wk.child.connected) wk.child.send(message, () => { /* a worker that just exited cannot be told */ });
    };
    const killAll = (sig: NodeJS.Signals): void => {
      for (const wk of live()) { try { wk.child.kill(sig); } catch { /* already gone */ } }
    };

    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        interrupted = true;
        log(`soco-train: ${sig}: asking ${live().length} worker(s) to checkpoint and stop, or to leave at once if still at the rendezvous (again to kill them)`);
        for (const wk of live()) tell(wk, `${STOP_MESSAGE} ${sig}`);
      } else {
        log(`soco-train: ${sig} again: killing the workers`);
        killAll('SIGKILL');
      }
    };
    const handle = o.handleSignals ?? true;
    if (handle) { process.on('SIGINT', onSignal); process.on('SIGTERM', onSignal); }

    // Picks the culprit and stops the other workers (told first, killed after the grace period).
    const decide = (): void => {
      if (failed) return;
      if (settle) clearTimeout(settle);
      failed = failures.find((f) => !lostPeer(f)) ?? failures[0];
      for (const other of live()) { tell(other, ABORT_MESSAGE); try { other.child.kill('SIGTERM'); } catch { /* gone */ } }
      if (live().length) killTimer = setTimeout(() => killAll('SIGKILL'), grace);
    };

    const finish = (): void => {
      if (killTimer) clearTimeout(killTimer);
      if (settle) clearTimeout(settle);
      if (handle) { process.off('SIGINT', onSignal); process.off('SIGTERM', onSignal); }
      let exitCode = 0;
      let message: string | null = null;
      if (failed) {
        const f: WorkerFailure = failed;
        exitCode = f.code ?? 128 + (f.signal ? os.constants.signals[f.signal] ?? 0 : 0);
        const how = f.code !== null ? `exited with code ${f.code}` : `was killed by ${f.signal}`;
        const others = workers.length - 1;
        const alsoLost = failures.filter((x) => x !== f).map((x) => x.rank);
        message = `soco-train: worker rank ${f.rank} (pid ${f.pid}) ${how}` +
          (others ? `; stopped the other ${others} worker(s) of this node` : '') +
          (alsoLost.length ? ` (rank ${alsoLost.join(', ')} failed too, after losing it)` : '') + '.\n' +
          (f.lastLines.length ? `Last lines of its stderr:\n${f.lastLines.map((l) => `  ${l}`).join('\n')}` : 'It wrote nothing to stderr.');
        log(message);
      } else if (interrupted && workers.some((wk) => wk.code === INTERRUPTED_EXIT_CODE)) {
        exitCode = INTERRUPTED_EXIT_CODE; // else the workers stopped cleanly and said so with 0
      }
      resolve({ exitCode, failed, failures, interrupted, message });
    };

    const onExit = (wk: Worker, code: number | null, signal: NodeJS.Signals | null): void => {
      if (wk.done) return;
      wk.done = true;
      wk.code = code;
      if (wk.partial) { wk.tail.push(wk.partial); wk.partial = ''; }
      const ok = code === 0 || (interrupted && code === INTERRUPTED_EXIT_CODE);
      if (!ok && !failed) {
        const f: WorkerFailure = { rank: wk.rank, pid: wk.child.pid, code, signal, lastLines: wk.tail.slice(-keep) };
        failures.push(f);
        // A worker that only lost a peer is rarely the cause: give the cause a moment to exit.
        if (!lostPeer(f) || !live().length) decide();
        else if (!settle) settle = setTimeout(decide, settleMs);
      }
      if (!live().length) {
        if (failures.length) decide();
        finish();
      }
    };

    for (let local = 0; local < nproc; local++) {
      const rank = nodeRank * nproc + local;
      const env: Record<string, string | undefined> = {
        OMP_NUM_THREADS: threads,
        ...process.env,
        ...o.env,
        MASTER_ADDR: masterAddr,
        MASTER_PORT: String(masterPort),
        WORLD_SIZE: String(worldSize),
        RANK: String(rank),
        LOCAL_RANK: String(local),
        LOCAL_WORLD_SIZE: String(nproc),
        GROUP_RANK: String(nodeRank),
        NODE_RANK: String(nodeRank),
        SOCO_DIST_WORKER: '1',
        // The worker dies with this process (a parent-death signal), even when it is killed with SIGKILL.
        SOCO_DIST_LAUNCHER_PID: String(process.pid),
      };
      // detached: a terminal's Ctrl-C reaches only the launcher, which then tells each worker once.
      const child = fork(script, args, { env, execArgv: o.execArgv ?? process.execArgv, stdio: ['inherit', 'inherit', 'pipe', 'ipc'], detached: true });
      const wk: Worker = { rank, child, tail: [], partial: '', done: false, code: null };
      workers.push(wk);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        const lines = (wk.partial + chunk).split('\n');
        wk.partial = lines.pop() ?? '';
        for (const line of lines) {
          process.stderr.write(`[rank ${rank}] ${line}\n`);
          wk.tail.push(line);
        }
        if (wk.tail.length > keep) wk.tail.splice(0, wk.tail.length - keep);
      });
      child.on('error', (err) => {
        wk.tail.push(`launcher: ${err.message}`);
        onExit(wk, 1, null);
      });
      child.on('close', (code, signal) => onExit(wk, code, signal));
    }
  });
}

// ---- command-line wiring (for `soco-train train`) ----

function intOption(name: string, min: number, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

/** Adds --nproc-per-node, --nnodes, --node-rank, --master-addr, --master-port to a command. */
export function addLaunchOptions(cmd: Command): Command {
  return cmd
    .option('--nproc-per-node <n>', 'start N worker processes on this machine, one per GPU (multi-GPU training)', intOption('--nproc-per-node', 1, 1024))
    .option('--nnodes <m>', 'number of machines in the job (with --nproc-per-node)', intOption('--nnodes', 1))
    .option('--node-rank <r>', "this machine's index in [0, nnodes)", intOption('--node-rank', 0))
    .option('--master-addr <host>', 'address of the machine with node rank 0 (needed with --nnodes > 1)')
    .option('--master-port <port>', 'free TCP port on the master (default: any free port on one machine, 29500 on several)', intOption('--master-port', 1, 65535));
}

/** The LaunchOptions from parsed addLaunchOptions() flags; null when --nproc-per-node was not given. */
export function launchOptionsFrom(opts: { nprocPerNode?: number; nnodes?: number; nodeRank?: number; masterAddr?: string; masterPort?: number }): LaunchOptions | null {
  if (opts.nprocPerNode === undefined) {
    if (opts.nnodes !== undefined || opts.nodeRank !== undefined || opts.masterAddr !== undefined || opts.masterPort !== undefined)
      throw new RangeError('--nnodes, --node-rank, --master-addr and --master-port need --nproc-per-node');
    return null;
  }
  return { nprocPerNode: opts.nprocPerNode, nnodes: opts.nnodes, nodeRank: opts.nodeRank, masterAddr: opts.masterAddr, masterPort: opts.masterPort };
}

export { expandNodelist };
