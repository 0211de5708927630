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
    await assert.rejects(new SoCoTrainer({ ...base(path.join(file, 'out')) }).train(), /output folder .*a-file\/out cannot be created/);
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
