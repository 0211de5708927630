// SoCoTrainer end to end on the bundled photos (small ResNet-18 config): an interrupted and
// resumed run repeats the uninterrupted one (losses to 1e-6, identical lr/tau sequence), a
// non-finite loss stops the run naming the iteration and the last good checkpoint, and bad
// inputs fail before any work with messages that name the path.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { SoCoTrainer } from '../lib/train/trainer';
import { TrainConfig } from '../lib/train/config';
import { BatchSource, TrainBatch, createBatchSource, listImageFiles } from '../lib/train/data_source';
import { NonFiniteLossError } from '../lib/train/step';
import { lrAt, tauAt, scaledLr } from '../lib/train/schedules';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { readImageSize } from '../lib/data/image';
import { readMetrics } from '../lib/train/metrics';
import { PYTHON } from './reference/python';
import { runTraining } from '../lib/cli/run_training';

const ROOT = path.resolve(__dirname, '..', '..');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
const HELDOUT = path.join(ROOT, 'test', 'fixtures', 'images', 'heldout');

/** A proposal store with three boxes per image (real store format, hand-placed boxes). */
async function makeStore(images: string, file: string): Promise<void> {
  const w = ProposalStoreWriter.open(file, { format: 'soco-train proposals 1', root: images });
  for (const key of listImageFiles(images)) {
    const { width: W, height: H } = await readImageSize(path.join(images, key));
    const f = (a: number, b: number, c: number, d: number): number[] => [Math.round(a * W), Math.round(b * H), Math.round(c * W), Math.round(d * H)];
    const boxes = [...f(0.1, 0.1, 0.6, 0.6), ...f(0.3, 0.2, 0.9, 0.8), ...f(0.2, 0.4, 0.7, 0.95)];
    w.append(key, { boxes, width: W, height: H, rawCount: 3, uniqueCount: 3, filterStage: 0, millis: 0 });
  }
  w.close();
}

describe('SoCoTrainer', function () {
  this.timeout(600000);
  let dir: string;
  let store: string;
  let threads = 1;
  const base = (out: string): Partial<TrainConfig> => ({
    images: TRAIN, proposals: store, out, depth: 18, head: false, batchSize: 2, maxIters: 6, epochs: 2, warmupEpochs: 1,
    v1Size: 112, projectorHidden: 64, predictorHidden: 64, embedDim: 32, logEvery: 1, checkpointEvery: 0, keepCheckpoints: 2,
    prefetch: 1, seed: 7,
  });
  before(async () => {
    // One intra-op thread: with the cores oversubscribed, OpenMP's spinning barriers make 2 threads
    // several times slower than 1 (measured here under load).
    threads = torch.getNumThreads();
    torch.setNumThreads(1);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-trainer-'));
    store = path.join(dir, 'train.proposals');
    await makeStore(TRAIN, store);
  });
  after(() => { torch.setNumThreads(threads); fs.rmSync(dir, { recursive: true, force: true }); });

  async function run(cfg: Partial<TrainConfig>, stopAt = 0): Promise<{ trainer: SoCoTrainer; seq: { step: number; loss: number; lr: number; tau: number }[]; result: Awaited<ReturnType<SoCoTrainer['train']>> }> {
    const trainer = new SoCoTrainer(cfg);
    const seq: { step: number; loss: number; lr: number; tau: number }[] = [];
    trainer.on('iteration', (e: { step: number; loss: number; lr: number; tau: number }) => {
      seq.push(e);
      if (e.step === stopAt) trainer.stop('test interrupt');
    });
    const result = await trainer.train();
    return { trainer, seq, result };
  }

  it('6 iterations straight equal 3 + interrupt + resume + 3: same losses (1e-6), same lr and tau', async () => {
    const a = await run(base(path.join(dir, 'straight')));
    assert.equal(a.result.steps, 6);
    assert.equal(a.result.stoppedEarly, false);
    // 11 photos at batch 2: 5 iterations per epoch, so the run crosses an epoch boundary.
    assert.equal(a.trainer.iterations, 6);
    await a.trainer.close();

    const out = path.join(dir, 'resumed');
    const b1 = await run(base(out), 3);
    assert.equal(b1.result.steps, 3);
    assert.equal(b1.result.stoppedEarly, true);
    assert.equal(b1.result.lastCheckpoint, path.join(out, 'last.pth'));
    await b1.trainer.close();
    const resumedFrom: number[] = [];
    const b2t = new SoCoTrainer(base(out));
    b2t.on('resume', (e: { step: number }) => resumedFrom.push(e.step));
    const seq2: { step: number; loss: number; lr: number; tau: number }[] = [];
    b2t.on('iteration', (e: { step: number; loss: number; lr: number; tau: number }) => seq2.push(e));
    const r2 = await b2t.train();
    await b2t.close();
    assert.deepEqual(resumedFrom, [3]);
    assert.equal(r2.steps, 6);

    const b = [...b1.seq, ...seq2];
    assert.deepEqual(b.map((e) => e.step), [1, 2, 3, 4, 5, 6]);
    for (let i = 0; i < 6; i++) {
      assert.ok(Math.abs(a.seq[i].loss - b[i].loss) <= 1e-6, `iteration ${i + 1}: ${a.seq[i].loss} vs ${b[i].loss}`);
      assert.equal(b[i].lr, a.seq[i].lr);
      assert.equal(b[i].tau, a.seq[i].tau);
    }
    // The schedules themselves: lr from 0 over 5 warmup iterations (1 epoch), tau(k + 1) after update k.
    const peak = scaledLr(1.0, 2);
    a.seq.forEach((e, i) => {
      assert.ok(Math.abs(e.lr - lrAt(i, { peakLr: peak, warmupIters: 5, totalIters: 6, warmupStartFactor: 0, minLr: 0 })) < 1e-15);
      assert.equal(e.tau, tauAt(i + 1, 0.99, 6));
    });
    // One metrics history after the resume (the interrupted run's records up to its checkpoint, then the rest).
    assert.deepEqual(readMetrics(path.join(out, 'metrics.jsonl')).map((r) => r.iter), [1, 2, 3, 4, 5, 6]);
    assert.ok(fs.existsSync(path.join(out, 'config.json')));
  });

  it('exports the online detector for Detectron2 and a fine-tuning YAML', async () => {
    const t = new SoCoTrainer({ ...base(path.join(dir, 'resumed')), resume: 'must' });
    await t.prepare();
    assert.equal(t.step, 6);
    const r = t.exportDetectron2();
    await t.close();
    const keys = JSON.parse(require('child_process').execFileSync(PYTHON, ['-c',
      'import sys, json, torch; d = torch.load(sys.argv[1], weights_only=True); print(json.dumps([d["__author__"], d["matching_heuristics"], sorted(d["model"])]))', r.weights],
    { encoding: 'utf8' })) as [string, boolean, string[]];
    assert.equal(keys[0], 'soco-train');
    assert.equal(keys[1], true);
    assert.ok(keys[2].includes('backbone.bottom_up.stem.conv1.weight') && keys[2].includes('backbone.fpn_lateral2.weight'));
    assert.ok(!keys[2].some((k) => /projector|predictor|target/.test(k)));
    assert.match(fs.readFileSync(r.config, 'utf8'), new RegExp(`WEIGHTS: "${r.weights.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`));
  });

  it('a signal during a step stops the run after that step: no further iteration, its checkpoint, exit 0', async () => {
    const out = path.join(dir, 'signalled');
    const trainer = new SoCoTrainer({ ...base(out), workers: 3 });
    const steps: number[] = [];
    // Sent inside iteration 2's step events, as a Ctrl-C during a long synchronous step would land.
    trainer.on('iteration', (e: { step: number }) => { steps.push(e.step); if (e.step === 2) process.kill(process.pid, 'SIGTERM'); });
    const lines: string[] = [];
    const code = await runTraining(trainer, (l) => lines.push(l));
    const text = lines.join('\n');
    assert.equal(code, 0, text);
    assert.deepEqual(steps, [1, 2], text);
    assert.match(text, /SIGTERM: stopping after this iteration/);
    assert.match(text, /checkpoint \(stop\) .*checkpoint-00000002\.pth at iteration 2/);
    assert.match(text, /stopped at iteration 2; continue with the same command/);
    assert.match(text, /data: 11 images, 5 iterations per epoch; 3 images decoded at once \(--workers\), 1 batches prepared ahead/);
  });

  it('a corrupt last.pth names the newest checkpoint that loads; stale temporary files are removed at start', async () => {
    const src = path.join(dir, 'resumed');  // the run of 6 iterations: its two newest checkpoints, last.pth = 6
    const [older, newest] = fs.readdirSync(src).filter((f) => /^checkpoint-\d+\.pth$/.test(f)).sort();
    assert.equal(newest, 'checkpoint-00000006.pth');
    const olderStep = Number(/\d+/.exec(older)![0]);
    const corrupt = (f: string): void => {
      const fd = fs.openSync(f, 'r+');
      fs.writeSync(fd, Buffer.alloc(64, 0xab), 0, 64, Math.floor(fs.fstatSync(fd).size / 2));
      fs.closeSync(fd);
    };
    const copyRun = (to: string, linked: boolean): void => {
      fs.mkdirSync(to);
      for (const f of [older, newest]) fs.copyFileSync(path.join(src, f), path.join(to, f));
      if (linked) fs.linkSync(path.join(to, newest), path.join(to, 'last.pth'));
      else fs.copyFileSync(path.join(src, 'last.pth'), path.join(to, 'last.pth'));
      corrupt(path.join(to, 'last.pth'));
    };
    // last.pth is a hard link to the newest numbered file, so both are damaged: the one before.
    const a = path.join(dir, 'corrupt-linked');
    copyRun(a, true);
    await assert.rejects(new SoCoTrainer(base(a)).train(), (e: Error) =>
      new RegExp(`cannot read checkpoint .*last\\.pth: .*The newest intact checkpoint is ${a}/${older} \\(iteration ${olderStep}\\): continue from it with --resume ${a}/${older}`).test(e.message));
    const b = path.join(dir, 'corrupt-copy');
    copyRun(b, false);
    await assert.rejects(new SoCoTrainer(base(b)).train(), /The newest intact checkpoint is .*corrupt-copy\/checkpoint-00000006\.pth \(iteration 6\)/);
    corrupt(path.join(b, older));
    corrupt(path.join(b, newest));
    await assert.rejects(new SoCoTrainer(base(b)).train(), /holds no other intact checkpoint: remove .*last\.pth to start over, or choose another --out/);

    // Resuming from the named checkpoint works; a dead writer's temporary file goes, with a note.
    const dead = Number(require('child_process').execFileSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }));
    const stale = path.join(a, `.checkpoint-00000004.pth.tmp-${os.hostname()}-${dead}-0123abcd`);
    fs.writeFileSync(stale, Buffer.alloc(1 << 20));
    const t = new SoCoTrainer({ ...base(a), resume: path.join(a, older) });
    const warnings: string[] = [];
    t.on('warning', (m: string) => warnings.push(m));
    const r = await t.train();
    await t.close();
    assert.equal(r.steps, 6);
    assert.ok(!fs.existsSync(stale));
    assert.ok(warnings.some((w) => /removed 1 temporary file\(s\) of interrupted writes \(1\.0 MB\): \.checkpoint-00000004\.pth\.tmp-.+-\d+-0123abcd/.test(w)), warnings.join('\n'));
    assert.equal((torch.load(path.join(a, 'last.pth')) as Record<string, unknown>).step, 6);
  });

  it('a non-finite loss stops the run naming the iteration and the last good checkpoint', async () => {
    const out = path.join(dir, 'nan');
    // The real loader, with the third batch's V2 poisoned.
    const poisoned = async (c: TrainConfig, device: string, log: (m: string) => void): Promise<BatchSource> => {
      const src = await createBatchSource(c, device, log);
      return {
        ...src,
        numImages: src.numImages, itersPerEpoch: src.itersPerEpoch,
        epoch(e: number, start: number): AsyncIterator<TrainBatch> {
          const it = src.epoch(e, start);
          let i = start;
          return {
            next: async () => {
              const r = await it.next();
              if (!r.done && e === 0 && i++ === 2) torch.noGrad(() => r.value.views[1].image.fill_(NaN));
              return r;
            },
            return: async () => (it.return ? it.return() : { done: true, value: undefined }),
          };
        },
        close: () => src.close(),
      };
    };
    const t = new SoCoTrainer({ ...base(out), checkpointEvery: 2 }, { createBatchSource: poisoned });
    await assert.rejects(t.train(), (e: Error) => e instanceof NonFiniteLossError && e.step === 2 &&
      /loss is NaN at iteration 3/.test(e.message) && e.message.includes(path.join(out, 'last.pth')));
    await t.close();
    const saved = torch.load(path.join(out, 'last.pth')) as Record<string, unknown>;
    assert.equal(saved.step, 2, 'the last good checkpoint is intact');
  });

  it('fails before any work, naming the path: missing images, unwritable out, store of another image set, --no-resume on a run, fp16 on the CPU', async () => {
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, '');
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'x')), images: path.join(dir, 'nope') }).train(), /--images .*nope: no such folder/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(file, 'out')) }).train(), /--out .*a-file\/out: .*a-file is a file, not a folder/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'x')), device: 'cuda:1' }).train(), /--device cuda:1: no CUDA device here/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'x')), proposals: path.join(dir, 'none.store') }).train(), /--proposals .*none\.store: no such file/);
    const other = path.join(dir, 'heldout.proposals');
    await makeStore(HELDOUT, other);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'x')), proposals: other }).train(),
      /has boxes for 0 of 11 sampled images of --images .*train \(it was made from .*heldout\): it belongs to another image set/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'resumed')), resume: 'never' }).train(), /already holds a run \(last\.pth\)/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'resumed')), seed: 8 }).train(), /cannot resume from .*last\.pth: seed was 7, now 8/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'x')), batchSize: 64 }).train(), /fewer than batchSize 64|larger than the data set/);
    await assert.rejects(new SoCoTrainer({ ...base(path.join(dir, 'x')), precision: 'fp16' }).train(), /--precision fp16 needs a CUDA device/);
  });
});
