// Distributed training as a user runs it: `soco-train train --nproc-per-node 2 --device cpu` (the
// real CLI, Gloo, the bundled photos, a small ResNet-18 FPN config in the demo's style).
//  - 2 processes x global batch 8 = 1 process x batch 8, with SyncBN in every network: the loss
//    of every iteration, and the online, predictor and target weights and BN statistics after 3
//    steps, to 1e-5; the LARS momentum (the sum of the raw gradients) to 5e-4 relative.
//    Why the momentum is compared as a whole: on real photos a few activations sit within
//    rounding of a ReLU's kink, and any change in the order of a reduction (SyncBN's two partial
//    sums, or one process with 2 threads instead of 1) flips them. Measured on this config: the
//    same 57 of 13.8M momentum entries (up to 6e-4 in one res5 BN bias) and the same 9.8e-5
//    relative norm, for 2 processes vs 1 and for 1 process with 1 vs 2 threads. The weights move
//    by lr x momentum, so the test uses a base lr of 0.25 (peak 0.0078) to keep that noise well
//    under 1e-5 while every BN weight still moves by ~1e-4 a step.
//  - SIGTERM to the launcher mid-run: every worker stops after the same iteration, rank 0 writes
//    one checkpoint, exit 0; the same command resumes and finishes.
//  - A killed worker ends the job, and the launcher names its rank.
import { strict as assert } from 'assert';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { listImageFiles } from '../lib/train/data_source';
import { readImageSize } from '../lib/data/image';
import { readMetrics } from '../lib/train/metrics';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'soco-train.js');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
const TOL = 1e-5;

/** Four hand-placed boxes per photo, in the real store format (keeps the test free of selective search). */
async function makeStore(images: string, file: string): Promise<void> {
  const w = ProposalStoreWriter.open(file, { format: 'soco-train proposals 1', root: images });
  for (const key of listImageFiles(images)) {
    const { width: W, height: H } = await readImageSize(path.join(images, key));
    const f = (a: number, b: number, c: number, d: number): number[] => [Math.round(a * W), Math.round(b * H), Math.round(c * W), Math.round(d * H)];
    const boxes = [...f(0.1, 0.1, 0.6, 0.6), ...f(0.3, 0.2, 0.9, 0.8), ...f(0.2, 0.4, 0.7, 0.95), ...f(0.05, 0.05, 0.3, 0.35)];
    w.append(key, { boxes, width: W, height: H, rawCount: 4, uniqueCount: 4, filterStage: 0, millis: 0 });
  }
  w.close();
}

/** The environment of a plain shell: no job variables; one thread per process (2 shared cores). */
function shellEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '1', SOCO_DIST_TIMEOUT: '120' };
  for (const k of Object.keys(env)) if (/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|GROUP_RANK|NODE_RANK|SOCO_DIST_.*|SLURM_.*)$/.test(k) && k !== 'SOCO_DIST_TIMEOUT') delete env[k];
  return env;
}

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs `node bin/soco-train.js <args>`; onLine sees each stdout line as it comes. */
function soco(args: string[], onLine?: (line: string, child: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: shellEnv() });
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) onLine?.(l, child);
    });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const show = (r: Run): string => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** The worker of `rank` among the launcher's children (read from /proc: the launcher sets RANK). */
function workerPid(launcher: number, rank: number): number {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== launcher) continue;
      if (fs.readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(d);
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

describe('soco-train train --nproc-per-node 2 (CPU, Gloo)', function () {
  this.timeout(300000);
  let dir: string;
  let store: string;
  /** Demo-style config, sized for a 2-core test machine. */
  const config = (out: string, batch: number, iters: number): string[] => [
    'train', '--images', TRAIN, '--proposals', store, '--out', out, '--device', 'cpu', '--depth', '18', '--no-head',
    '--v1-size', '96', '--k', '4', '--projector-hidden', '64', '--predictor-hidden', '64', '--embed-dim', '32',
    '--batch-size', String(batch), '--max-iters', String(iters), '--epochs', String(iters), '--warmup-epochs', '1', '--seed', '3', '--base-lr', '0.25',
    '--log-every', '1', '--checkpoint-every', '0', '--checkpoint-every-epochs', '0', '--keep-checkpoints', '1', '--prefetch', '1',
  ];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-dist-train-'));
    store = path.join(dir, 'train.store');
    await makeStore(TRAIN, store);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('2 processes x global batch 8 = 1 process x batch 8: same loss at every iteration, same final weights (1e-5), SyncBN on', async () => {
    const one = path.join(dir, 'one');
    const two = path.join(dir, 'two');
    // Side by side: they are independent runs.
    const [r1, r2] = await Promise.all([soco(config(one, 8, 3)), soco([...config(two, 8, 3), '--nproc-per-node', '2'])]);
    assert.equal(r1.code, 0, show(r1));
    assert.equal(r2.code, 0, show(r2));
    // Rank 0 alone prints: the config, one progress line per iteration, one summary.
    assert.equal(r2.stdout.match(/^config \(presets/gm)?.length, 1, r2.stdout);
    assert.equal(r2.stdout.match(/^epoch \d+\/3 iter \d\/3 loss/gm)?.length, 3, r2.stdout);
    assert.equal(r2.stdout.match(/^done: 3 iterations/gm)?.length, 1, r2.stdout);
    assert.match(r2.stdout, /Detectron2 weights: .*detectron2\.pth/);

    const m1 = readMetrics(path.join(one, 'metrics.jsonl'));
    const m2 = readMetrics(path.join(two, 'metrics.jsonl'));
    assert.deepEqual(m2.map((r) => r.iter), [1, 2, 3]);
    assert.deepEqual(m1.map((r) => r.iter), [1, 2, 3]);
    m1.forEach((r, i) => {
      assert.ok(Math.abs(r.loss - m2[i].loss) <= TOL, `iteration ${r.iter}: loss ${m2[i].loss} on 2 processes, ${r.loss} on 1`);
      for (const [pair, v] of Object.entries(r.pairs ?? {})) assert.ok(Math.abs(v - m2[i].pairs![pair]) <= TOL, `iteration ${r.iter}, ${pair}`);
      assert.equal(m2[i].lr, r.lr);
      assert.equal(m2[i].tau, r.tau);
    });

    const a = checkpointTensors(path.join(one, 'last.pth'));
    const b = checkpointTensors(path.join(two, 'last.pth'));
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    const worst: Record<string, { diff: number; name: string; n: number }> = {};
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
      const w = (worst[kind] ??= { diff: 0, name: '', n: 0 });
      w.n++;
      if (diff > w.diff) Object.assign(w, { diff, name });
    }
    assert.deepEqual(Object.keys(worst).sort(), ['BN statistics', 'online + predictor', 'target']);
    for (const [kind, w] of Object.entries(worst)) assert.ok(w.diff <= TOL, `${kind}: ${w.name} differs by ${w.diff}`);
    assert.ok(momentumNorm > 0, 'LARS has momentum buffers');
    const rel = Math.sqrt(momentumDiff / momentumNorm);
    assert.ok(rel <= 5e-4, `LARS momentum differs by ${rel} of its norm`);
    for (const t of [...a.values(), ...b.values()]) t.dispose();
  });

  it('SIGTERM to the launcher mid-run: one checkpoint by rank 0, exit 0; the same command resumes and finishes', async () => {
    const out = path.join(dir, 'resume');
    const args = [...config(out, 2, 4), '--nproc-per-node', '2'];
    let signalled = false;
    const first = await soco(args, (line, child) => {
      if (!signalled && /^epoch \d+\/\d+ iter 1\/4 loss/.test(line)) { signalled = true; child.kill('SIGTERM'); }
    });
    assert.equal(first.code, 0, show(first));
    assert.match(first.stderr, /soco-train: SIGTERM: asking 2 worker\(s\) to checkpoint and stop/);
    const stopped = Number(/^stopped at iteration (\d+); continue with the same command/m.exec(first.stdout)?.[1]);
    assert.ok(stopped >= 1 && stopped < 4, show(first));
    assert.equal(first.stdout.match(/^checkpoint \(/gm)?.length, 1, 'one checkpoint, by rank 0');
    assert.match(first.stdout, new RegExp(`^checkpoint \\(stop\\) .*checkpoint-${String(stopped).padStart(8, '0')}\\.pth at iteration ${stopped}$`, 'm'));
    assert.deepEqual(fs.readdirSync(out).filter((f) => f.endsWith('.pth')).sort(), [`checkpoint-${String(stopped).padStart(8, '0')}.pth`, 'last.pth']);
    assert.ok(!fs.existsSync(path.join(out, 'detectron2.pth')), 'no export for an unfinished run');

    const second = await soco(args);
    assert.equal(second.code, 0, show(second));
    assert.equal(second.stdout.match(/^resuming from .*last\.pth at iteration (\d+)$/gm)?.length, 1, second.stdout);
    assert.match(second.stdout, new RegExp(`^resuming from .*last\\.pth at iteration ${stopped}$`, 'm'));
    assert.match(second.stdout, /^done: 4 iterations/m);
    assert.deepEqual(readMetrics(path.join(out, 'metrics.jsonl')).map((r) => r.iter), [1, 2, 3, 4]);
    assert.ok(fs.existsSync(path.join(out, 'detectron2.pth')));
  });

  it('a killed worker ends the job: the other is stopped and the launcher exits naming the rank', async () => {
    const out = path.join(dir, 'killed');
    let victim = 0;
    const r = await soco([...config(out, 2, 50), '--nproc-per-node', '2'], (line, child) => {
      if (!victim && /^epoch \d+\/\d+ iter 1\/50 loss/.test(line)) {
        victim = workerPid(child.pid!, 1);
        process.kill(victim, 'SIGKILL');
      }
    });
    assert.ok(victim > 0, show(r));
    assert.equal(r.code, 128 + 9, show(r));
    assert.match(r.stderr, new RegExp(`soco-train: worker rank 1 \\(pid ${victim}\\) was killed by SIGKILL; stopped the other 1 worker\\(s\\) of this node`));
    assert.doesNotMatch(r.stdout, /^done:/m);
  });
});
