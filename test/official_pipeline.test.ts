// --preset official end to end: real photos, a real proposal store and a fixed seed go through the
// loader (the authors' box pipeline), the data adapter and one training step; the loss it returns
// equals the authors' loss computed in PyTorch (test/reference/official_ref.py: torch.nn and
// torchvision.ops, every box on every level, the (level, slot) correspondence matrix of equal
// proposal ids) from the boxes as the authors' data code holds them before scaling. The levels and
// RoIAlign boxes agree too. Cases: R18-FPN; the same with V3 at 100 pixels, where each feature
// map's own size (13x13 P3: 13/100) differs from 1/stride (1/8), so the per-map RoIAlign scale
// matters; SoCo* (V4 = V2 at 112 shares V2's boxes); R18-C4 (two views, no levels, no jitter).
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { SoCoModel } from '../lib/model';
import { readImageSize } from '../lib/data/image';
import { listImageFiles } from '../lib/data/image_files';
import { Batch, SoCoLoader, disposeBatch } from '../lib/data/loader';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { toAuthorsRects } from '../lib/data/selective_search';
import { LARS } from '../lib/train/lars';
import { TrainConfig, networkOptions, resolveConfig } from '../lib/train/config';
import { geometryOptions, openProposals, toTrainBatch } from '../lib/train/data_source';
import { trainStep } from '../lib/train/step';
import { PYTHON, writeBundle } from './reference/soco_ref';

const TRAIN = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'images', 'train');
const REF = path.resolve(__dirname, '..', '..', 'test', 'reference', 'official_ref.py');
const OFFICIAL_MAX_SIZE = 224;

interface Result { loss: number; pairs: number[]; levels: number[][][]; boxes: number[][][][]; checked: number }
interface Case { name: string; config: TrainConfig; batch: Batch; loss: number; pairs: Record<string, number>; dir: string }

const CASES: [string, string, Partial<Record<keyof TrainConfig, unknown>>][] = [
  ['official', 'official', {}],
  ['official, V3 at 100', 'official', { v3Size: 100 }],
  ['official SoCo*', 'official,soco-star', {}],
  ['official C4', 'official,c4', {}],
];

describe("--preset official: the authors' box pipeline and loss end to end vs PyTorch", function () {
  this.timeout(600000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-official-'));
  const store = path.join(tmp, 'train.proposals');
  const cases: Case[] = [];
  let results: Result[] = [];
  let threads = 1;

  before(async () => {
    threads = torch.getNumThreads();
    torch.setNumThreads(1);
    // Four boxes per photo, from small to most of the image; the small corner one is often
    // outside a crop, so pairs are padded (K = 4) and the two sides repeat different proposals.
    const w = ProposalStoreWriter.open(store, { root: TRAIN });
    for (const key of listImageFiles(TRAIN)) {
      const { width: W, height: H } = await readImageSize(path.join(TRAIN, key));
      const f = (a: number, b: number, c: number, d: number): number[] => [Math.round(a * W), Math.round(b * H), Math.round(c * W), Math.round(d * H)];
      w.append(key, { boxes: [...f(0.05, 0.05, 0.3, 0.3), ...f(0.2, 0.1, 0.9, 0.75), ...f(0.4, 0.5, 0.7, 0.95), ...f(0.85, 0.82, 0.99, 0.98)], width: W, height: H, rawCount: 4, uniqueCount: 4, filterStage: 0, millis: 0 });
    }
    w.close();
    const requests: string[] = [];
    for (const [name, presets, extra] of CASES) {
      const config = resolveConfig({
        presets,
        overrides: { images: TRAIN, proposals: store, depth: 18, batchSize: 4, seed: 5, ...extra },
      }).config;
      const files = listImageFiles(TRAIN);
      const { store: opened, lookup } = openProposals(store, TRAIN, files);
      try {
        const loader = new SoCoLoader({ root: TRAIN, files, proposals: lookup, batchSize: 4, seed: config.seed, geometry: geometryOptions(config), prefetch: 1, log: () => undefined });
        const it = loader.epoch(0);
        const batch = (await it.next()).value as Batch;
        await it.return(undefined);
        torch.manualSeed(1);
        const model = new SoCoModel(networkOptions(config));
        const dir = path.join(tmp, name.replace(/\W+/g, '_'));
        const images = batch.keys.map((key, i) => {
          const rec = lookup.get(key);
          assert.ok(rec, key);
          const { w: width, h: height } = batch.geometry[i].views[0].crop;
          return { width, height, rects: toAuthorsRects(rec.boxes) };
        });
        const views = batch.geometry[0].views.map((v, k) => ({
          size: v.width, crops: batch.geometry.map((g) => { const c = g.views[k].crop; return [c.x, c.y, c.w, c.h]; }), flips: batch.geometry.map((g) => g.views[k].flip),
        }));
        const sets = batch.sets.map((s, k) => ({
          view: s.view, jittered: s.view === 0 && config.jitter, inclusive: batch.geometry.map((g) => g.sets[k].inclusive), ids: batch.geometry.map((g) => g.sets[k].ids),
        }));
        const state = Object.fromEntries(Object.entries(model.stateDict()).map(([k, v]) => [`state.${k}`, v]));
        writeBundle(path.join(dir, 'in'), { ...state, ...Object.fromEntries(batch.views.map((v, k) => [`view.${k}`, v])) });
        fs.writeFileSync(path.join(dir, 'in', 'request.json'), JSON.stringify({
          options: model.options, thresholds: [...config.levelThresholds, OFFICIAL_MAX_SIZE], images, views, sets, pairs: batch.pairs.map((p) => [p.a, p.b]),
        }));
        requests.push(path.join(dir, 'in'), path.join(dir, 'out'));
        // The training path itself: data adapter, model, id-weighted loss, LARS step.
        const train = toTrainBatch(batch);  // its dispose() would free the batch too: freed by hand below
        const opt = new LARS([...model.online.namedParameters('online'), ...model.predictor.namedParameters('predictor')]);
        const r = trainStep(model, opt, train.views, train.pairs, {
          lr: 0.1, tau: 0.99, normalization: config.lossNormalization, measureStd: false, step: 0, lastCheckpoint: null,
        });
        for (const v of train.views) { v.boxes.dispose(); v.levels?.dispose(); }
        for (const p of train.pairs) for (const t of p.ids ?? []) t.dispose();
        opt.dispose();
        for (const t of [...model.parameters(), ...model.buffers()]) t.dispose();
        cases.push({ name, config, batch, loss: r.loss, pairs: r.pairs, dir });
      } finally {
        opened.close();
      }
    }
    execFileSync(PYTHON, [REF, ...requests], { encoding: 'utf8', timeout: 600000 });
    results = cases.map((c) => JSON.parse(fs.readFileSync(path.join(c.dir, 'out', 'result.json'), 'utf8')) as Result);
  });

  after(() => {
    torch.setNumThreads(threads);
    for (const c of cases) disposeBatch(c.batch);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('the batch exercises the rules: per-pair V1 sets, different repeats in the two views, several levels, flips', () => {
    const b = cases[0].batch;
    assert.deepEqual(b.sets.map((s) => s.view), [0, 1, 0, 2]);
    assert.deepEqual(b.pairs.map((p) => [p.name, p.a, p.b]), [['v1-v2', 0, 1], ['v1-v3', 2, 3]]);
    assert.equal(b.pairing, 'ids');
    assert.deepEqual(cases[2].batch.sets.map((s) => s.view), [0, 1, 0, 2, 3]);
    assert.deepEqual(cases[2].batch.pairs.map((p) => [p.name, p.a, p.b]), [['v1-v2', 0, 1], ['v1-v3', 2, 3], ['v1-v4', 0, 4]]);
    assert.deepEqual(cases[3].batch.pairs.map((p) => [p.name, p.a, p.b]), [['v1-v2', 0, 1]]);
    const sorted = (a: number[]): string => a.slice().sort((x, y) => x - y).join();
    let differentRepeats = 0;
    for (const g of b.geometry) for (const [a, c] of g.pairs) if (sorted(g.sets[a].ids) !== sorted(g.sets[c].ids)) differentRepeats++;
    assert.ok(differentRepeats > 0, 'some pair repeats different proposals in its two views');
    const levels = new Set(cases.flatMap((c) => c.batch.sets.flatMap((s) => s.levels.toArray())));
    assert.ok(levels.size >= 3, `levels ${[...levels]}`);
    assert.ok(b.geometry.some((g) => g.views.some((v) => v.flip)));
    assert.ok(results[0].checked > 0, 'clipped boxes checked against the proposals in Python');
  });

  it('levels (from the integer boxes) and RoIAlign boxes (normalised, flipped) equal the reference', () => {
    cases.forEach((c, i) => {
      c.batch.sets.forEach((s, k) => {
        assert.deepEqual(s.levels.toArray(), results[i].levels[k].flat(), `${c.name} set ${k} levels`);
        const ours = s.boxes.toArray();
        results[i].boxes[k].flat(2).forEach((v, j) => assert.ok(Math.abs(v - ours[j]) < 1e-4, `${c.name} set ${k} box value ${j}: ${ours[j]} vs ${v}`));
      });
    });
  });

  it('the training step\'s loss and per-pair values equal the authors\' loss in PyTorch', () => {
    cases.forEach((c, i) => {
      const ref = results[i];
      assert.ok(ref.pairs.every((v) => Math.abs(v) > 1e-3), `${c.name}: every pair has matched slots (${ref.pairs})`);
      assert.ok(Math.abs(c.loss - ref.loss) <= 1e-4 * Math.abs(ref.loss), `${c.name}: loss ${c.loss} vs ${ref.loss}`);
      c.batch.pairs.forEach(({ name }, p) =>
        assert.ok(Math.abs(c.pairs[name] - ref.pairs[p]) <= 1e-4 * Math.abs(ref.pairs[p]), `${c.name} ${name}: ${c.pairs[name]} vs ${ref.pairs[p]}`));
    });
  });
});
