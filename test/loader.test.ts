// The view pixels (lib/data/views.ts) against torchvision's resized_crop/resize, and the loader
// (lib/data/loader.ts) end to end on the fixture photos: shapes, reproducibility, shuffling and
// sharding, unreadable images, missing proposals, small images, boxes that follow the pixels
// through crop + resize + flip, and no tensor left behind.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, liveTensors, stack, tensor, tidy } from '../lib/torch';
import { decodeImage, readImageSize } from '../lib/data/image';
import { ProposalStore, ProposalStoreWriter } from '../lib/data/proposal_store';
import { Batch, LoaderError, SoCoLoader, disposeBatch } from '../lib/data/loader';
import { settledLiveTensors } from './gc';
import { renderViews } from '../lib/data/views';
import { ViewAugmentation, byolAugmentation } from '../lib/data/augment';
import { ImageViews, PAPER_GEOMETRY, Rng, officialGeometry, sampleViews } from '../lib/data/views_geometry';
import { encodePng } from '../lib/cli/proposals';
import { listImageFiles as listImages } from '../lib/data';
import { writeViewSheets } from '../lib/cli/views';
import { PYTHON } from './reference/python';

const ROOT = path.resolve(__dirname, '..', '..');
const IMAGES = path.join(ROOT, 'test', 'fixtures', 'images');
const TOL = 1 / 255;

function tmpdir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `soco-${tag}-`));
}

/** Max |ours - torchvision| for ops of test/reference/augment_ref.py. */
function torchvisionDiff(cases: { name: string; op: string; input: Tensor; ours: Tensor; [k: string]: unknown }[]): Map<string, number> {
  const dir = tmpdir('views');
  try {
    const spec = cases.map((c, i) => {
      const file = path.join(dir, `in${i}.f32`);
      fs.writeFileSync(file, Buffer.from((tidy(() => c.input.contiguous().toTypedArray()) as Float32Array).buffer));
      const { input, ours, ...rest } = c;
      return { ...rest, input: file, shape: input.shape };
    });
    fs.writeFileSync(path.join(dir, 'spec.json'), JSON.stringify({ cases: spec }));
    execFileSync(PYTHON, [path.join(ROOT, 'test', 'reference', 'augment_ref.py'), path.join(dir, 'spec.json')]);
    const out = new Map<string, number>();
    for (const c of cases) {
      const ref = new Float32Array(fs.readFileSync(path.join(dir, `${c.name}.f32`)).buffer.slice(0));
      const ours = tidy(() => c.ours.contiguous().toTypedArray()) as Float32Array;
      assert.equal(ours.length, ref.length, `${c.name}: size`);
      let max = 0;
      for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(ours[i] - ref[i]));
      out.set(c.name, max);
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const maxDiff = (a: Tensor, b: Tensor): number => tidy(() => a.sub(b).abs().max().item());

const floatImage = (data: Uint8Array, w: number, h: number): Tensor =>
  tidy(() => tensor(data, { shape: [h, w, 3] }).permute(2, 0, 1).float().div(255));

describe('views: crops and resizes vs torchvision', function () {
  const files = ['train/astronaut.png', 'train/chelsea.jpg', 'heldout/coffee.jpg', 'train/china.jpg', 'bad/small.jpg']
    .map((f) => path.join(ROOT, 'test', 'fixtures', f.startsWith('bad/') ? '' : 'images', f));

  it('paper layout: V1, V2 = crop of V1 resized, V3 = V2 at 112, within 1/255', async function () {
    const decoded = await Promise.all(files.map((f) => decodeImage(f, { width: 224, height: 224 })));
    const v1 = tidy(() => stack(decoded.map((d) => floatImage(d.data, 224, 224))));
    const geoms = decoded.map((d, i) => sampleViews(new Rng(100 + i), d.originalWidth, d.originalHeight, [], PAPER_GEOMETRY));
    const [r1, r2, r3] = renderViews({ v1 }, geoms, 224);
    assert.deepEqual([r1.shape, r2.shape, r3.shape], [[5, 3, 224, 224], [5, 3, 224, 224], [5, 3, 112, 112]]);
    assert.equal(maxDiff(r1, v1), 0);
    const crops = geoms.map((g) => [g.views[1].crop.y, g.views[1].crop.x, g.views[1].crop.h, g.views[1].crop.w]);
    const d = torchvisionDiff([
      { name: 'v2', op: 'resized_crop', input: v1, ours: r2, crops, size: 224 },
      { name: 'v3', op: 'resize', input: r2, ours: r3, size: 112 },
    ]);
    assert.ok((d.get('v2') as number) <= TOL, `V2: ${d.get('v2')}`);
    assert.ok((d.get('v3') as number) <= TOL, `V3: ${d.get('v3')}`);
    for (const t of [v1, r1, r2, r3]) t.dispose();
  });

  it("authors' layout: every view a crop of the raw image (small images upsampled), within 1/255", async function () {
    const o = officialGeometry('fpn');
    const cases: Parameters<typeof torchvisionDiff>[0] = [];
    for (const [i, f] of files.entries()) {
      const d = await decodeImage(f);
      const src = floatImage(d.data, d.width, d.height);
      const g: ImageViews = sampleViews(new Rng(7 + i), d.width, d.height, [], o);
      const views = renderViews({ sources: [src] }, [g], 224);
      const batch = src.unsqueeze(0);
      g.views.forEach((v, k) => cases.push({
        name: `${path.basename(f)}-v${k + 1}`, op: 'resized_crop', input: batch, ours: views[k],
        crops: [[v.crop.y, v.crop.x, v.crop.h, v.crop.w]], size: v.width,
      }));
      src.dispose();
    }
    const diff = torchvisionDiff(cases);
    for (const [name, m] of diff) assert.ok(m <= TOL, `${name}: ${m}`);
    for (const c of cases) { c.input.dispose(); c.ours.dispose(); }
  });
});

/** A store with synthetic boxes for every image but `missing`, and a failure record for `failed`. */
async function makeStore(dir: string, files: string[], missing: string[], failed: string[]): Promise<ProposalStore> {
  const file = path.join(dir, 'proposals.store');
  const w = ProposalStoreWriter.open(file, { test: true });
  for (const [n, key] of files.entries()) {
    if (missing.includes(key)) continue;
    if (failed.includes(key)) { w.appendFailure(key, 'test failure'); continue; }
    const { width: W, height: H } = await readImageSize(path.join(IMAGES, key));
    const rng = new Rng(n + 1);
    const boxes: number[] = [];
    for (let b = 0; b < 30; b++) {
      const bw = Math.max(8, Math.floor(W * rng.uniform(0.1, 0.5)));
      const bh = Math.max(8, Math.floor(H * rng.uniform(0.1, 0.5)));
      const x = rng.int(W - bw + 1);
      const y = rng.int(H - bh + 1);
      boxes.push(x, y, x + bw, y + bh);
    }
    w.append(key, { boxes, width: W, height: H, rawCount: 30, uniqueCount: 30, filterStage: 0, millis: 0 });
  }
  w.close();
  return ProposalStore.open(file);
}

async function collect(loader: SoCoLoader, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  try {
    for await (const b of loader.epoch(epoch)) out.push(b);
  } catch (e) {
    out.forEach(disposeBatch);
    throw e;
  }
  return out;
}


describe('loader', function () {
  const files = listImages(IMAGES);
  const missing = ['heldout/camera.png', 'train/coins.png'];
  const failed = ['train/ihc.jpg'];
  let dir: string;
  let store: ProposalStore;

  before(async function () {
    dir = tmpdir('loader');
    store = await makeStore(dir, files, missing, failed);
  });
  after(function () {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('delivers views, boxes, levels and ids of the right shapes, and counts proposal fallbacks', async function () {
    const loader = new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 4, seed: 1, log: () => undefined });
    assert.equal(loader.length, 3);
    // Awaits let the GC backstop free earlier tests' garbage mid-count: collect it first.
    const live = await settledLiveTensors();
    const batches = await collect(loader, 0);
    assert.equal(batches.length, 3);
    for (const b of batches) {
      assert.deepEqual(b.views.map((v) => v.shape), [[4, 3, 224, 224], [4, 3, 224, 224], [4, 3, 112, 112]]);
      assert.deepEqual(b.boxes.map((v) => v.shape), [[4, 4, 4], [4, 4, 4], [4, 4, 4]]);
      assert.deepEqual(b.levels.map((v) => [v.shape, v.dtype]), [[[4, 4], 'int64'], [[4, 4], 'int64'], [[4, 4], 'int64']]);
      assert.deepEqual(b.ids.shape, [4, 4]);
      const ids = b.ids.toArray();
      b.keys.forEach((k, i) => {
        if (missing.includes(k) || failed.includes(k)) assert.deepEqual(ids.slice(i * 4, i * 4 + 4), [-1, -1, -1, -1], k);
      });
      // Normalised: roughly zero-mean, unit-scale values, finite everywhere.
      for (const v of b.views) assert.ok(Number.isFinite(tidy(() => v.abs().max().item())));
      for (const [v, bx] of b.boxes.entries()) {
        const a = bx.toArray();
        const size = b.views[v].size(3);
        for (let i = 0; i < a.length; i += 4) assert.ok(a[i] >= -1e-4 && a[i + 2] <= size + 1e-4 && a[i] < a[i + 2] && a[i + 1] < a[i + 3], `view ${v} box ${a.slice(i, i + 4)}`);
      }
    }
    const delivered = new Set(batches.flatMap((b) => b.keys));
    const expectMissing = [...missing, ...failed].filter((k) => delivered.has(k)).length;
    assert.equal(loader.stats.missingProposals, expectMissing);
    assert.equal(loader.stats.images, 12);
    batches.forEach(disposeBatch);
    assert.equal(liveTensors(), live, 'an epoch leaves no tensor behind');
  });

  it('is reproducible: same seed, same batches, whatever the prefetch depth', async function () {
    const make = (prefetch: number, seed = 5) => new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 3, seed, prefetch, log: () => undefined });
    const a = await collect(make(1), 2);
    const b = await collect(make(4), 2);
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) {
      assert.deepEqual(a[i].keys, b[i].keys);
      for (let v = 0; v < 3; v++) {
        assert.equal(maxDiff(a[i].views[v], b[i].views[v]), 0, `batch ${i} view ${v}`);
        assert.deepEqual(a[i].boxes[v].toArray(), b[i].boxes[v].toArray());
      }
      assert.deepEqual(a[i].ids.toArray(), b[i].ids.toArray());
    }
    const c = await collect(make(2, 6), 2);
    assert.notDeepEqual(c.map((x) => x.keys), a.map((x) => x.keys), 'another seed, another order');
    [...a, ...b, ...c].forEach(disposeBatch);
  });

  it('resizing to V1 on the device (DCT-scaled decode) gives the host path\'s views within 2/255', async function () {
    const plain: ViewAugmentation = { ...byolAugmentation(1), jitterProb: 0, grayscaleProb: 0, blurProb: 0, solarizeProb: 0, normalize: null };
    const make = (resizeOnDevice: boolean) => new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 7, seed: 9,
      resizeOnDevice, augmentations: [plain, plain, plain], log: () => undefined });
    const host = await collect(make(false), 0);
    const dev = await collect(make(true), 0);
    for (let i = 0; i < host.length; i++) {
      assert.deepEqual(dev[i].keys, host[i].keys);
      assert.deepEqual(dev[i].boxes[1].toArray(), host[i].boxes[1].toArray());
      for (let v = 0; v < 3; v++) {
        const d = maxDiff(dev[i].views[v], host[i].views[v]);
        const mean = tidy(() => dev[i].views[v].sub(host[i].views[v]).abs().mean().item());
        assert.ok(d <= 2 / 255 && mean < 0.3 / 255, `batch ${i} view ${v}: max ${d * 255}/255, mean ${mean * 255}/255`);
      }
    }
    [...host, ...dev].forEach(disposeBatch);
  });

  it("delivers SoCo*'s four views and the C4 variant's two", async function () {
    const star = new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 2, seed: 4, geometry: { ...PAPER_GEOMETRY, socoStar: true }, log: () => undefined });
    const c4 = new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 2, seed: 4, geometry: officialGeometry('c4'), log: () => undefined });
    for await (const b of star.epoch(0)) {
      assert.deepEqual(b.views.map((v) => v.shape), [[2, 3, 224, 224], [2, 3, 224, 224], [2, 3, 112, 112], [2, 3, 192, 192]]);
      disposeBatch(b);
      break;
    }
    for await (const b of c4.epoch(0)) {
      assert.deepEqual(b.views.map((v) => v.shape), [[2, 3, 224, 224], [2, 3, 224, 224]]);
      disposeBatch(b);
      break;
    }
    assert.throws(() => new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 2, seed: 4, geometry: officialGeometry('c4'),
      augmentations: [byolAugmentation(0)] }), /1 augmentations for 2 views \(c4\)/);
  });

  it('resumes mid-epoch: epoch(e, 2) is batches 2.. of epoch(e), same views and boxes, the skipped ones not decoded', async function () {
    const geometry = { ...PAPER_GEOMETRY, v1Size: 96, v2Size: 96, v3Size: 48 };
    const make = () => new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 3, seed: 12, geometry, log: () => undefined });
    const whole = await collect(make(), 3);
    const tail = make();
    const resumed: Batch[] = [];
    for await (const b of tail.epoch(3, 2)) resumed.push(b);
    assert.equal(whole.length, 4);
    assert.equal(tail.stats.images, 2 * 3, 'only batches 2 and 3 were decoded');
    assert.deepEqual(resumed.map((b) => b.index), [2, 3]);
    resumed.forEach((b, i) => {
      const a = whole[i + 2];
      assert.deepEqual(b.keys, a.keys);
      assert.deepEqual(b.ids.toArray(), a.ids.toArray());
      for (let v = 0; v < 3; v++) {
        assert.equal(maxDiff(b.views[v], a.views[v]), 0, `batch ${b.index} view ${v}`);
        assert.deepEqual(b.boxes[v].toArray(), a.boxes[v].toArray());
        assert.deepEqual(b.levels[v].toArray(), a.levels[v].toArray());
      }
    });
    const none: Batch[] = [];
    for await (const b of make().epoch(3, 4)) none.push(b);
    assert.equal(none.length, 0, 'starting past the end yields nothing');
    [...whole, ...resumed].forEach(disposeBatch);
    await assert.rejects(make().epoch(3, -1).next(), /startBatch must be a non-negative integer, got -1/);
  });

  it('random boxes (Table 5(c)) and no V3 (Table 4): K boxes per image, fixed across epochs, two views at the configured sizes', async function () {
    const geometry = { ...PAPER_GEOMETRY, k: 2, multiView: false, v1Size: 96, v2Size: 64, keepClipped: true };
    const make = () => new SoCoLoader({ root: IMAGES, files, proposals: null, randomBoxes: true, batchSize: 7, seed: 3, geometry, log: () => undefined });
    const loader = make();
    const [a, b] = [await collect(loader, 0), await collect(make(), 0)];
    for (const [i, x] of a.entries()) {
      assert.deepEqual(x.views.map((v) => v.shape), [[7, 3, 96, 96], [7, 3, 64, 64]]);
      assert.deepEqual(x.boxes[1].toArray(), b[i].boxes[1].toArray(), 'deterministic per seed');
      for (const id of x.ids.toArray()) assert.ok(id >= -1 && id < 2, `id ${id}`);
    }
    assert.equal(loader.stats.missingProposals, 0);
    assert.ok(loader.stats.fallbacks < 14, `${loader.stats.fallbacks} of 14 images without a surviving box`);
    // The boxes belong to the image, not to the epoch: V1 is the whole image, so an unflipped V1
    // box is the same in every epoch (jitter off).
    const v1Boxes = async (epoch: number): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      const l = new SoCoLoader({ root: IMAGES, files, proposals: null, randomBoxes: true, batchSize: 7, seed: 3, log: () => undefined,
        geometry: { ...geometry, jitter: false, flipProb: 0, cropScale: [1, 1], keepClipped: true } });
      for (const x of await collect(l, epoch)) {
        const bx = x.boxes[0].toArray();
        const ids = x.ids.toArray();
        x.keys.forEach((k, i) => { for (let j = 0; j < 2; j++) out.set(`${k}:${ids[i * 2 + j]}`, bx.slice((i * 2 + j) * 4, (i * 2 + j) * 4 + 4).map((v) => v.toFixed(3)).join()); });
        disposeBatch(x);
      }
      return out;
    };
    const [e0, e1] = [await v1Boxes(0), await v1Boxes(1)];
    let same = 0;
    for (const [k, v] of e0) if (e1.has(k)) { assert.equal(e1.get(k), v, k); same++; }
    assert.ok(same >= 10, `${same} boxes compared`);
    [...a, ...b].forEach(disposeBatch);
    assert.throws(() => new SoCoLoader({ root: IMAGES, files, proposals: store, randomBoxes: true, batchSize: 2, seed: 1 }), /randomBoxes replaces the proposals/);
  });

  it('shuffles per epoch and shards disjointly across ranks', function () {
    const mk = (rank: number, worldSize: number) => new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 2, seed: 3, rank, worldSize });
    const e0 = mk(0, 1).plan(0).flat();
    const e1 = mk(0, 1).plan(1).flat();
    assert.notDeepEqual(e0, e1);
    assert.deepEqual([...e0].sort((x, y) => x - y), Array.from({ length: 14 }, (_, i) => i));
    const ranks = [0, 1, 2].map((r) => mk(r, 3).plan(4));
    ranks.forEach((p) => assert.equal(p.length, 2, 'floor(14 / 3) = 4 per rank, 2 batches of 2'));
    const all = ranks.flat(2);
    assert.equal(new Set(all).size, all.length, 'ranks share no image');
    const keep = new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 4, seed: 3, dropLast: false });
    assert.deepEqual(keep.plan(0).map((b) => b.length), [4, 4, 4, 2]);
    assert.throws(() => mk(3, 3), /rank must be in \[0, 3\)/);
    assert.throws(() => new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: 20, seed: 1 }), /fewer than batchSize 20/);
  });

  it('replaces unreadable images (logged once, counted) and stops when more than the allowed fraction is bad', async function () {
    const bad = tmpdir('bad');
    try {
      for (const f of files) fs.mkdirSync(path.join(bad, path.dirname(f)), { recursive: true });
      for (const f of files) fs.copyFileSync(path.join(IMAGES, f), path.join(bad, f));
      fs.copyFileSync(path.join(ROOT, 'test', 'fixtures', 'bad', 'truncated.jpg'), path.join(bad, 'train', 'zz_truncated.jpg'));
      fs.copyFileSync(path.join(ROOT, 'test', 'fixtures', 'bad', 'small.jpg'), path.join(bad, 'train', 'zz_small.jpg'));
      const all = listImages(bad);
      assert.equal(all.length, 16);
      const logs: string[] = [];
      const loader = new SoCoLoader({ root: bad, files: all, proposals: store, batchSize: 4, seed: 11, maxBadFraction: 0.1, log: (m) => logs.push(m) });
      for (let e = 0; e < 2; e++) {
        const batches = await collect(loader, e);
        assert.equal(batches.length, 4);
        for (const b of batches) {
          assert.ok(!b.keys.includes('train/zz_truncated.jpg'));
          assert.equal(b.views[0].size(0), 4);
        }
        // The 100x67 photo, smaller than every view, is delivered at full view size (upsampled).
        assert.ok(batches.some((b) => b.keys.includes('train/zz_small.jpg')));
        batches.forEach(disposeBatch);
      }
      assert.deepEqual([...loader.stats.unreadable.keys()], ['train/zz_truncated.jpg']);
      assert.equal(logs.length, 1, 'logged once across epochs');
      assert.match(logs[0], /zz_truncated\.jpg.*truncated/i);
      const strict = new SoCoLoader({ root: bad, files: all, proposals: store, batchSize: 4, seed: 11, log: () => undefined });
      await assert.rejects(collect(strict, 0), (e: unknown) =>
        e instanceof LoaderError && /1 of 16 images \(6\.25%\) are unreadable, more than 1\.00%/.test(e.message) &&
        e.files.includes('train/zz_truncated.jpg'));
    } finally {
      fs.rmSync(bad, { recursive: true, force: true });
    }
  });

  it('boxes follow the pixels through crop, resize and flip (paper and authors\' layouts)', async function () {
    // A dark image with one bright rectangle, which is also its one proposal; colour
    // augmentations off, flips on: in every view the box must cover the bright pixels exactly.
    // (The authors' box pipeline keeps their boxes, two source pixels short on the right and the
    // bottom: test/views_official.test.ts.)
    const box = [70, 40, 230, 170];
    const W = 320, H = 240;
    const rgb = new Uint8Array(W * H * 3).fill(20);
    for (let y = box[1]; y < box[3]; y++) for (let x = box[0]; x < box[2]; x++) rgb.fill(230, (y * W + x) * 3, (y * W + x) * 3 + 3);
    const sdir = tmpdir('boxes');
    try {
      const names = Array.from({ length: 8 }, (_, i) => `img${i}.png`);
      for (const n of names) fs.writeFileSync(path.join(sdir, n), encodePng(rgb, W, H));
      const w = ProposalStoreWriter.open(path.join(sdir, 'p.store'), {});
      for (const n of names) w.append(n, { boxes: box, width: W, height: H, rawCount: 1, uniqueCount: 1, filterStage: 0, millis: 0 });
      w.close();
      const ps = ProposalStore.open(path.join(sdir, 'p.store'));
      const plain: ViewAugmentation = { ...byolAugmentation(1), jitterProb: 0, grayscaleProb: 0, blurProb: 0, solarizeProb: 0, normalize: null };
      let checked = 0;
      let flipped = 0;
      for (const geometry of [{ ...PAPER_GEOMETRY, jitter: false, cropScale: [0.7, 1] as [number, number] }, { ...officialGeometry('fpn'), boxPipeline: 'paper' as const, jitter: false, cropScale: [0.7, 1] as [number, number] },
        { ...PAPER_GEOMETRY, jitter: false, cropScale: [0.7, 1] as [number, number], v1Size: 128, v2Size: 96, v3Size: 48 }]) {
        const loader = new SoCoLoader({ root: sdir, files: names, proposals: ps, batchSize: 8, seed: 21, geometry, augmentations: [plain, plain, plain] });
        for (const b of await collect(loader, 0)) {
          for (let v = 0; v < 3; v++) {
            const [n, , h, wd] = b.views[v].shape;
            const px = tidy(() => b.views[v].select(1, 0).contiguous().toTypedArray()) as Float32Array;
            const bx = b.boxes[v].toArray();
            for (let i = 0; i < n; i++) {
              if (b.ids.toArray()[i * 4] < 0) continue;  // no proposal survived the crop
              checked++;
              if (b.geometry[i].views[v].flip) flipped++;
              const [x1, y1, x2, y2] = bx.slice(i * 16, i * 16 + 4);
              for (let y = 0; y < h; y++) for (let x = 0; x < wd; x++) {
                const val = px[(i * h + y) * wd + x];
                const cx = x + 0.5, cy = y + 0.5;
                if (cx > x1 + 1.5 && cx < x2 - 1.5 && cy > y1 + 1.5 && cy < y2 - 1.5) assert.ok(val > 0.85, `view ${v} image ${i}: inside (${x},${y}) = ${val}, box ${[x1, y1, x2, y2]}`);
                if (cx < x1 - 1.5 || cx > x2 + 1.5 || cy < y1 - 1.5 || cy > y2 + 1.5) assert.ok(val < 0.12, `view ${v} image ${i}: outside (${x},${y}) = ${val}, box ${[x1, y1, x2, y2]}`);
              }
            }
          }
          disposeBatch(b);
        }
      }
      ps.close();
      assert.ok(checked >= 36 && flipped >= 9, `checked ${checked} views, ${flipped} flipped`);
    } finally {
      fs.rmSync(sdir, { recursive: true, force: true });
    }
  });
});

describe('soco-train views', function () {
  it('writes contact sheets: a row per image, V1/V2/V3 side by side', async function () {
    const dir = tmpdir('sheets');
    try {
      const files = listImages(IMAGES);
      const store = await makeStore(dir, files, ['train/coins.png'], []);
      store.close();
      const logs: string[] = [];
      const warnings: string[] = [];
      const [log, warn] = [console.log, console.warn];
      console.log = (...a: unknown[]) => { logs.push(a.join(' ')); };
      console.warn = (...a: unknown[]) => { warnings.push(a.join(' ')); };
      let written: string[];
      try {
        written = await writeViewSheets({ images: IMAGES, proposals: path.join(dir, 'proposals.store'), out: path.join(dir, 'out'),
          n: 5, perSheet: 3, seed: 1, epoch: 0, layout: 'paper', device: 'cpu' });
        // The sheets stop the epoch early and close the store: prefetches in flight must not use it.
        await new Promise((r) => setTimeout(r, 300));
      } finally {
        [console.log, console.warn] = [log, warn];
      }
      assert.deepEqual(warnings, []);
      assert.equal(written.length, 2);
      const a = await decodeImage(written[0]);
      const b = await decodeImage(written[1]);
      assert.deepEqual([a.width, a.height], [8 + 224 + 8 + 224 + 8 + 112 + 8, 22 + 8 + 3 * (224 + 8)]);
      assert.deepEqual([b.width, b.height], [592, 22 + 8 + 3 * (224 + 8)]);
      assert.match(logs[logs.length - 1], /views: 6 images/);
      await assert.rejects(writeViewSheets({ images: path.join(dir, 'nope'), proposals: 'x', out: dir, n: 1, perSheet: 1, seed: 0, epoch: 0, layout: 'paper', device: 'cpu' }),
        /--images .*nope: not a directory/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
