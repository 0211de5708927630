// What the multi-process CLI tests share: the bundled photos with hand-placed boxes, a config sized
// for a 2-core test machine, running `soco-train` as a user does, and the comparison of a job's
// losses and weights with those of one process with the same global batch.
import { strict as assert } from 'assert';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../lib/torch';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { listImageFiles } from '../lib/train/data_source';
import { readImageSize } from '../lib/data/image';
import { readMetrics } from '../lib/train/metrics';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'soco-train.js');
export const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
const TOL = 1e-5;

/** Four hand-placed boxes per photo, in the real store format (keeps the tests free of selective search). */
export async function makeStore(images: string, file: string): Promise<void> {
  const w = ProposalStoreWriter.open(file, { format: 'soco-train proposals 1', root: images });
  for (const key of listImageFiles(images)) {
    const { width: W, height: H } = await readImageSize(path.join(images, key));
    const f = (a: number, b: number, c: number, d: number): number[] => [Math.round(a * W), Math.round(b * H), Math.round(c * W), Math.round(d * H)];
    const boxes = [...f(0.1, 0.1, 0.6, 0.6), ...f(0.3, 0.2, 0.9, 0.8), ...f(0.2, 0.4, 0.7, 0.95), ...f(0.05, 0.05, 0.3, 0.35)];
    w.append(key, { boxes, width: W, height: H, rawCount: 4, uniqueCount: 4, filterStage: 0, millis: 0 });
  }
  w.close();
}

/** Demo-style config (ResNet-18 FPN, no box head, V1 96 px, K = 4), sized for a 2-core test machine. */
export function trainArgs(store: string, out: string, batch: number, iters: number): string[] {
  return [
    'train', '--images', TRAIN, '--proposals', store, '--out', out, '--device', 'cpu', '--depth', '18', '--no-head',
    '--v1-size', '96', '--k', '4', '--projector-hidden', '64', '--predictor-hidden', '64', '--embed-dim', '32',
    '--batch-size', String(batch), '--max-iters', String(iters), '--epochs', String(iters), '--warmup-epochs', '1', '--seed', '3', '--base-lr', '0.25',
    '--log-every', '1', '--checkpoint-every', '0', '--checkpoint-every-epochs', '0', '--keep-checkpoints', '1', '--prefetch', '1',
  ];
}

/** The environment of a plain shell: no job variables, no interface variables; one thread per process (2 shared cores). */
export function shellEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '1', SOCO_DIST_TIMEOUT: '120' };
  for (const k of Object.keys(env))
    if (/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|GROUP_RANK|NODE_RANK|SOCO_DIST_.*|SLURM_.*|GLOO_SOCKET_IFNAME|NCCL_SOCKET_IFNAME)$/.test(k) && k !== 'SOCO_DIST_TIMEOUT') delete env[k];
  return { ...env, ...extra };
}

export interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; pid: number; ms: number }

export interface RunOptions {
  /** Run through this command (e.g. into a network namespace); the soco-train command line is appended. */
  prefix?: string[];
  env?: NodeJS.ProcessEnv;
  /** Sees each stdout and stderr line as it comes. */
  onLine?: (line: string, child: ChildProcess) => void;
}

const running = new Set<ChildProcess>();

/** Kills what soco() started and is still running (a failed test must not leave a job behind). */
export function killLeftovers(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** Runs `node bin/soco-train.js <args>` as a user does; resolves when it has exited. */
export function soco(args: string[], o: RunOptions = {}): Promise<Run> {
  return new Promise((resolve) => {
    const [cmd, ...pre] = [...(o.prefix ?? []), process.execPath, BIN, ...args];
    const t0 = Date.now();
    const child = spawn(cmd, pre, { cwd: ROOT, env: o.env ?? shellEnv() });
    running.add(child);
    const out = { stdout: '', stderr: '' };
    for (const which of ['stdout', 'stderr'] as const) {
      let pending = '';
      child[which].on('data', (d: Buffer) => {
        out[which] += d;
        pending += d;
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const l of lines) o.onLine?.(l, child);
      });
    }
    child.on('close', (code, signal) => {
      running.delete(child);
      resolve({ code, signal, ...out, pid: child.pid ?? 0, ms: Date.now() - t0 });
    });
  });
}

export const show = (r: Run): string => `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** The child processes of `parent` (from /proc). */
export function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) out.push(Number(d));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** The worker of `rank` among the launcher's children (the launcher sets RANK). */
export function workerPid(launcher: number, rank: number): number {
  for (const pid of childrenOf(launcher)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return pid;
    } catch { /* exited meanwhile */ }
  }
  throw new Error(`no worker of rank ${rank} under pid ${launcher}`);
}

/** Every tensor of a checkpoint by dotted name (RNG states left out: each rank keeps its own). */
function checkpointTensors(file: string): Map<string, torch.Tensor> {
  const out = new Map<string, torch.Tensor>();
  const walk = (v: unknown, name: string): void => {
    if (v instanceof torch.Tensor) out.set(name, v);
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) if (name || k !== 'rng') walk(x, name ? `${name}.${k}` : k);
  };
  walk(torch.load(file), '');
  return out;
}

/**
 * The run in `job` (several processes) trained as the run in `one` (one process, same global
 * batch): the loss of every iteration, lr and tau, and the online, predictor and target weights
 * and BN statistics of last.pth, to 1e-5; the LARS momentum (the sum of the raw gradients) to
 * 5e-4 of its norm. Why the momentum is compared as a whole: on real photos a few activations
 * sit within rounding of a ReLU's kink, and any change in the order of a reduction (SyncBN's two
 * partial sums, or one process with 2 threads instead of 1) flips them. Measured on this config:
 * the same 57 of 13.8M momentum entries (up to 6e-4 in one res5 BN bias) and the same 9.8e-5
 * relative norm, for 2 processes vs 1 and for 1 process with 1 vs 2 threads. The weights move by
 * lr x momentum, so the tests use a base lr of 0.25 (peak 0.0078) to keep that noise well under
 * 1e-5 while every BN weight still moves by ~1e-4 a step.
 */
export function assertSameTraining(one: string, job: string, iters: number): void {
  const m1 = readMetrics(path.join(one, 'metrics.jsonl'));
  const m2 = readMetrics(path.join(job, 'metrics.jsonl'));
  const all = Array.from({ length: iters }, (_, i) => i + 1);
  assert.deepEqual(m1.map((r) => r.iter), all);
  assert.deepEqual(m2.map((r) => r.iter), all);
  m1.forEach((r, i) => {
    assert.ok(Math.abs(r.loss - m2[i].loss) <= TOL, `iteration ${r.iter}: loss ${m2[i].loss} in the job, ${r.loss} in one process`);
    for (const [pair, v] of Object.entries(r.pairs ?? {})) assert.ok(Math.abs(v - m2[i].pairs![pair]) <= TOL, `iteration ${r.iter}, ${pair}`);
    assert.equal(m2[i].lr, r.lr);
    assert.equal(m2[i].tau, r.tau);
  });

  const a = checkpointTensors(path.join(one, 'last.pth'));
  const b = checkpointTensors(path.join(job, 'last.pth'));
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  const worst: Record<string, { diff: number; name: string }> = {};
  let momentumDiff = 0;
  let momentumNorm = 0;
  for (const [name, t] of a) {
    const [diff, d2, n2] = torch.tidy(() => {
      const x = t.to(null, 'float64');
      const d = x.sub(b.get(name)!.to(null, 'float64'));
      return [d.abs().max().item(), d.pow(2).sum().item(), x.pow(2).sum().item()];
    });
    if (name.startsWith('optimizer.')) { momentumDiff += d2; momentumNorm += n2; continue; }
    const kind = /running_|num_batches/.test(name) ? 'BN statistics' : name.startsWith('target.') ? 'target' : 'online + predictor';
    const w = (worst[kind] ??= { diff: 0, name: '' });
    if (diff > w.diff) Object.assign(w, { diff, name });
  }
  assert.deepEqual(Object.keys(worst).sort(), ['BN statistics', 'online + predictor', 'target']);
  for (const [kind, w] of Object.entries(worst)) assert.ok(w.diff <= TOL, `${kind}: ${w.name} differs by ${w.diff}`);
  assert.ok(momentumNorm > 0, 'LARS has momentum buffers');
  const rel = Math.sqrt(momentumDiff / momentumNorm);
  assert.ok(rel <= 5e-4, `LARS momentum differs by ${rel} of its norm`);
  for (const t of [...a.values(), ...b.values()]) t.dispose();
}
