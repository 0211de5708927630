// Fault suite, train and export side: `soco-train train` and `soco-train export` killed with -9 at
// random moments (several times each, the same output folder), and concurrent writers. After each
// kill nothing that was complete is lost (every checkpoint the run reported is there and loads,
// the export is absent or whole); a rerun of the same command finishes with the content of an
// undisturbed run (weights, losses, export) and leaves no stray files. Tiny ResNet-18 runs; the
// seed of the kill moments changes every run (SOCO_FAULT_SEED repeats one).
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
import { Rng } from '../lib/data/views_geometry';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'soco-train.js');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
const ITERS = 6;
const ITER_LINE = /iter (\d+)\/\d+ loss/;

interface Run { code: number | null; signal: NodeJS.Signals | null; out: string; killed: boolean }

/**
 * Runs `soco-train args`; `killWhen(line)` returning a delay in ms schedules a kill -9 that long
 * after that output line (the first line it answers for).
 */
function cli(args: string[], killWhen?: (line: string) => number | null): Promise<Run> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let out = '';
    let pending = '';
    let armed = false;
    let killed = false;
    const arm = (ms: number): void => {
      armed = true;
      setTimeout(() => { if (child.exitCode === null && child.signalCode === null) { killed = true; child.kill('SIGKILL'); } }, ms);
    };
    const take = (d: Buffer): void => {
      out += d.toString();
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        if (armed || !killWhen) continue;
        const ms = killWhen(l);
        if (ms !== null) arm(ms);
      }
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    if (killWhen) { const ms = killWhen(''); if (ms !== null) arm(ms); }
    child.on('close', (code, signal) => resolve({ code, signal, out, killed }));
  });
}

/** Largest |a - b| over every tensor of two loaded checkpoints (same keys required). */
function maxDiff(a: unknown, b: unknown, where = ''): number {
  if (a instanceof torch.Tensor) {
    assert.ok(b instanceof torch.Tensor, `${where}: tensor vs ${typeof b}`);
    assert.deepEqual(a.shape, b.shape, where);
    return torch.tidy(() => (a.numel ? a.to(null, 'float64').sub(b.to(null, 'float64')).abs().max().item() as number : 0));
  }
  if (a && typeof a === 'object') {
    const ka = Object.keys(a as object).sort();
    assert.deepEqual(ka, Object.keys(b as object).sort(), where);
    return Math.max(0, ...ka.map((k) => maxDiff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`)));
  }
  if (where !== '.config') assert.deepEqual(a, b, where);
  return 0;
}

function disposeAll(v: unknown): void {
  if (v instanceof torch.Tensor) v.dispose();
  else if (v && typeof v === 'object') Object.values(v).forEach(disposeAll);
}

function stepOf(checkpoint: string): number {
  const st = torch.load(checkpoint) as Record<string, unknown>;
  disposeAll(st);
  return Number(st.step);
}

function loadable(file: string): boolean {
  try {
    disposeAll(torch.load(file));
    return true;
  } catch {
    return false;
  }
}

const strays = (dir: string): string[] => fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => /\.tmp-|^\.write-test/.test(path.basename(f)));

describe('fault suite: train and export killed with -9, concurrent writers', function () {
  this.timeout(900000);
  const seed = Number(process.env.SOCO_FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const random = new Rng(seed);
  const rand = (): number => random.next();
  let dir: string;
  let store: string;
  let ref: string;
  // The undisturbed run's time per iteration on this machine now: kill delays are drawn within it,
  // so that a kill lands in the run's remaining work however fast or busy the machine is.
  let perIter = 0;
  const trainArgs = (out: string): string[] => ['train', '--images', TRAIN, '--proposals', store, '--out', out, '--depth', '18', '--no-head',
    '--batch-size', '2', '--max-iters', String(ITERS), '--epochs', '2', '--warmup-epochs', '1', '--v1-size', '64', '--v2-size', '64',
    '--v3-size', '32', '--projector-hidden', '32', '--predictor-hidden', '32', '--embed-dim', '16', '--log-every', '1',
    '--checkpoint-every', '1', '--keep-checkpoints', '2', '--prefetch', '1', '--workers', '2'];
  const RUN_FILES = ['checkpoint-00000005.pth', 'checkpoint-00000006.pth', 'config.json', 'detectron2.pth', 'detectron2_mask_rcnn_1x.yaml', 'last.pth', 'metrics.jsonl', 'tb'];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-fault-'));
    store = path.join(dir, 'p.store');
    const w = ProposalStoreWriter.open(store, { format: 'soco-train proposals 1' });
    for (const key of listImageFiles(TRAIN)) {
      const { width: W, height: H } = await readImageSize(path.join(TRAIN, key));
      w.append(key, { boxes: [0, 0, Math.round(W * 0.6), Math.round(H * 0.6), Math.round(W * 0.3), Math.round(H * 0.3), W, H], width: W, height: H, rawCount: 2, uniqueCount: 2, filterStage: 0, millis: 0 });
    }
    w.close();
    ref = path.join(dir, 'ref');
    const seen: number[] = [];
    const r = await cli(trainArgs(ref), (line) => { if (ITER_LINE.test(line)) seen.push(Date.now()); return null; });
    assert.equal(r.code, 0, r.out);
    perIter = (seen[seen.length - 1] - seen[0]) / (seen.length - 1);
    assert.deepEqual(fs.readdirSync(ref).sort(), RUN_FILES);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`train killed up to 3 times at random moments, then rerun: same weights, losses and export as undisturbed, no strays (seed ${seed})`, async () => {
    const out = path.join(dir, 'killed');
    const log: string[] = [];
    const last = path.join(out, 'last.pth');
    for (let k = 0; k < 3; k++) {
      // After a random iteration still to run (never the last), a random delay of up to 1.5
      // iterations: lands in a step, a checkpoint write, the last.pth switch or the export.
      const resumed = fs.existsSync(last) ? stepOf(last) : 0;
      if (resumed >= ITERS - 1) break;
      const at = resumed + 1 + Math.floor(rand() * (ITERS - 1 - resumed));
      const delay = Math.floor(rand() * 1.5 * perIter);
      const r = await cli(trainArgs(out), (line) => { const m = ITER_LINE.exec(line); return m && Number(m[1]) >= at ? delay : null; });
      log.push(`kill ${k + 1}: after iteration ${at} + ${delay} ms: ${r.killed ? 'killed' : `exit ${r.code}`}`);
      // Every checkpoint the run reported is complete: last.pth is at least that far and loads,
      // and every numbered file there loads.
      const reported = [...r.out.matchAll(/checkpoint \(\w+\) .* at iteration (\d+)/g)].map((m) => Number(m[1]));
      if (reported.length) {
        assert.ok(fs.existsSync(last), `${log.join('\n')}\nlast.pth missing after checkpoint ${reported[reported.length - 1]}`);
        const st = torch.load(last) as Record<string, unknown>;
        assert.ok(Number(st.step) >= reported[reported.length - 1], `${log.join('\n')}\nlast.pth at ${st.step}, reported ${reported}`);
        disposeAll(st);
      }
      for (const f of fs.readdirSync(out).filter((f) => /^checkpoint-\d+\.pth$/.test(f))) assert.ok(loadable(path.join(out, f)), `${f} is damaged\n${log.join('\n')}`);
    }
    assert.ok(log.some((l) => l.endsWith('killed')), `the kills missed the runs:\n${log.join('\n')}`);
    const r = await cli(trainArgs(out));
    assert.equal(r.code, 0, `${log.join('\n')}\n${r.out}`);
    assert.deepEqual(strays(out), [], log.join('\n'));
    assert.deepEqual(fs.readdirSync(out).filter((f) => !f.startsWith('.')).sort(), RUN_FILES, log.join('\n'));
    // The same content as the undisturbed run.
    const [a, b] = [torch.load(path.join(ref, 'last.pth')), torch.load(path.join(out, 'last.pth'))];
    const d = maxDiff(a, b);
    disposeAll([a, b]);
    assert.ok(d <= 1e-6, `weights differ by ${d}\n${log.join('\n')}`);
    const [ea, eb] = [torch.load(path.join(ref, 'detectron2.pth')), torch.load(path.join(out, 'detectron2.pth'))];
    assert.ok(maxDiff(ea, eb) <= 1e-6, 'export differs');
    disposeAll([ea, eb]);
    const [ma, mb] = [readMetrics(path.join(ref, 'metrics.jsonl')), readMetrics(path.join(out, 'metrics.jsonl'))];
    assert.deepEqual(mb.map((m) => m.iter), [1, 2, 3, 4, 5, 6], log.join('\n'));
    ma.forEach((m, i) => assert.ok(Math.abs(m.loss - mb[i].loss) <= 1e-6, `iteration ${m.iter}: loss ${m.loss} vs ${mb[i].loss}`));
  });

  it(`export killed 4 times at random moments: never a partial file; the rerun writes the same file, no strays (seed ${seed})`, async () => {
    const ckpt = path.join(ref, 'last.pth');
    for (const ext of ['pth', 'pkl']) {
      const refOut = path.join(dir, `ref-export.${ext}`);
      const t0 = Date.now();
      const r0 = await cli(['export', '--checkpoint', ckpt, '--out', refOut]);
      assert.equal(r0.code, 0, r0.out);
      const took = Date.now() - t0;
      const want = fs.readFileSync(refOut);
      const out = path.join(dir, 'exports', `soco.${ext}`);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const log: string[] = [];
      for (let k = 0; k < (ext === 'pth' ? 4 : 2); k++) {
        const delay = Math.floor(rand() * took);
        const r = await cli(['export', '--checkpoint', ckpt, '--out', out], () => delay);
        log.push(`${ext} kill ${k + 1} at ${delay} of ~${took} ms: ${r.killed ? 'killed' : `exit ${r.code}`}`);
        // Absent, or the whole file: the final name only ever receives a complete export.
        if (fs.existsSync(out)) assert.ok(fs.readFileSync(out).equals(want), `partial ${out}\n${log.join('\n')}`);
      }
      assert.ok(log.some((l) => l.endsWith('killed')), `the kills missed the exports:\n${log.join('\n')}`);
      const r = await cli(['export', '--checkpoint', ckpt, '--out', out]);
      assert.equal(r.code, 0, r.out);
      assert.ok(fs.readFileSync(out).equals(want), 'the rerun writes the undisturbed export, byte for byte');
      assert.deepEqual(strays(path.dirname(out)), [], log.join('\n'));
    }
  });

  it('two exports to one --out at once: both finish, the file is whole, no strays', async () => {
    const out = path.join(dir, 'exports', 'twice.pth');
    const [a, b] = await Promise.all([0, 1].map(() => cli(['export', '--checkpoint', path.join(ref, 'last.pth'), '--out', out])));
    assert.equal(a.code, 0, a.out);
    assert.equal(b.code, 0, b.out);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(path.join(dir, 'ref-export.pth'))));
    assert.deepEqual(strays(path.dirname(out)), []);
  });
});
