// Selective search against the Python reference (bench/selective_search_ref.py: skimage's
// felzenszwalb + the authors' grouping) on real photos: same segmentation, same boxes.
import { SYSTEM_PYTHON } from './reference/python';
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  FilterStage, OFFICIAL_PRESET, PAPER_PRESET, SelectiveSearchParams, felzenszwalb, fromAuthorsRects,
  selectiveSearch, toAuthorsRects,
} from '../lib/data/selective_search';

const ROOT = path.resolve(__dirname, '..', '..');
const REF = path.join(ROOT, 'bench', 'selective_search_ref.py');
const PY = SYSTEM_PYTHON;
const SKI = '/usr/lib/python3/dist-packages/skimage/data';
const FIX = path.join(ROOT, 'test', 'fixtures', 'images');

interface Decoded { rgb: Uint8Array; width: number; height: number }
interface RefLine { path: string; width: number; height: number; nsegments: number; labels?: string; rgb?: string; rects?: number[][] }

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-ss-test-'));

function ref(cmd: string, p: Pick<SelectiveSearchParams, 'scale' | 'sigma' | 'minSize'>, files: string[]): RefLine[] {
  const out = execFileSync(PY, [REF, cmd, '--scale', String(p.scale), '--sigma', String(p.sigma),
    '--min-size', String(p.minSize), '--labels', tmp, ...files], { encoding: 'utf8', maxBuffer: 1 << 28 });
  return out.trim().split('\n').map((l) => JSON.parse(l) as RefLine);
}

function rgbOf(file: string): Decoded {
  const raw = path.join(tmp, path.basename(file) + '.rgb');
  if (!fs.existsSync(raw)) execFileSync(PY, [REF, 'decode', file, raw]);
  const meta = JSON.parse(execFileSync(PY, ['-c', `from PIL import Image; im=Image.open(${JSON.stringify(file)}); print('{"width":%d,"height":%d}' % im.size)`], { encoding: 'utf8' })) as { width: number; height: number };
  return { rgb: new Uint8Array(fs.readFileSync(raw)), ...meta };
}

/** Share of pixels in segments that are each other's best match (1 = same partition). */
function agreement(a: Int32Array, b: Int32Array): number {
  const pair = new Map<number, number>();
  let na = 0;
  for (let i = 0; i < a.length; i++) if (a[i] >= na) na = a[i] + 1;
  for (let i = 0; i < a.length; i++) { const k = b[i] * na + a[i]; pair.set(k, (pair.get(k) ?? 0) + 1); }
  const bestA = new Map<number, [number, number]>(), bestB = new Map<number, [number, number]>();
  for (const [k, n] of pair) {
    const la = k % na, lb = Math.floor(k / na);
    if ((bestA.get(la)?.[1] ?? -1) < n) bestA.set(la, [lb, n]);
    if ((bestB.get(lb)?.[1] ?? -1) < n) bestB.set(lb, [la, n]);
  }
  let ok = 0;
  for (const [la, [lb, n]] of bestA) if (bestB.get(lb)?.[0] === la) ok += n;
  return ok / a.length;
}

/** The authors' filters (SoCo's filters.py semantics) on their [x, y, w, h] rects. */
function authorsFilter(rects: number[][], W: number, H: number): { rects: number[][]; stage: FilterStage } {
  const img = Math.sqrt(W * H);
  const rules: ((w: number, h: number) => boolean)[] = [
    (w, h) => w >= 32 && h >= 32 && 1 / 3 <= w / h && w / h <= 3 && 0.3 <= Math.sqrt(w * h) / img && Math.sqrt(w * h) / img <= 0.8,
    (w, h) => w >= 32 && h >= 32 && 1 / 3 <= w / h && w / h <= 3,
    (w, h) => w >= 32 && h >= 32,
  ];
  for (let s = 0; s < rules.length; s++) {
    const kept = rects.filter((r) => rules[s](r[2], r[3]));
    if (kept.length) return { rects: kept, stage: s };
  }
  return { rects: [], stage: FilterStage.Empty };
}

const uniqueRects = (rects: number[][]): number[][] => toAuthorsRects(fromAuthorsRects(rects));

describe('selective search', function () {
  this.timeout(120000);
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('segments like skimage.segmentation.felzenszwalb on real photos (>= 99% of pixels)', async () => {
    const files = [`${SKI}/astronaut.png`, `${SKI}/coffee.png`, `${SKI}/chelsea.png`];
    for (const d of ['train', 'heldout']) {
      const dir = path.join(FIX, d);
      if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir).sort()) files.push(path.join(dir, f));
    }
    // every photo with the paper's parameters, the skimage trio with the authors' (time budget)
    for (const [preset, set] of [[PAPER_PRESET, files], [OFFICIAL_PRESET, files.slice(0, 3)]] as const) {
      const lines = ref('felz', preset, [...set]);
      assert.equal(lines.length, set.length);
      for (const l of lines) {
        const rgb = new Uint8Array(fs.readFileSync(l.rgb!));
        const want = new Int32Array(fs.readFileSync(l.labels!).buffer.slice(0));
        const got = await felzenszwalb(rgb, l.width, l.height, preset);
        const agree = agreement(got.labels, want);
        assert.ok(agree >= 0.99, `${path.basename(l.path)} (scale ${preset.scale}): ${(agree * 100).toFixed(3)}% of pixels agree`);
        // in practice the partition is identical, labels included (both in raster order)
        assert.equal(got.segments, l.nsegments, path.basename(l.path));
        assert.deepEqual(got.labels, want, `${path.basename(l.path)}: labels differ`);
      }
    }
  });

  it("yields the reference's boxes (raw and ratio3size0308-filtered) on real photos", async () => {
    // thin strips of a real photo exercise the filter's fallbacks (every box too small for the
    // size rule, or too flat for the ratio rule); the rest are ImageNet-sized photos
    const strips = [[36, 'strip36'], [33, 'strip33']].map(([h, name]) => {
      const f = path.join(tmp, `retina_${name}.png`);
      execFileSync(PY, ['-c', `from PIL import Image; Image.open('${FIX}/train/retina.jpg').convert('RGB').crop((0, 700, 1411, ${700 + Number(h)})).save('${f}')`]);
      return f;
    });
    const cases: [SelectiveSearchParams, string[]][] = [
      [PAPER_PRESET, [`${SKI}/chelsea.png`, `${SKI}/coffee.png`, ...strips]],
      [OFFICIAL_PRESET, [`${SKI}/astronaut.png`, path.join(FIX, 'train', 'rocket.jpg')]],
    ];
    const stages = new Set<number>();
    for (const [preset, files] of cases) {
      for (const l of ref('ss', preset, files)) {
        const { rgb, width, height } = rgbOf(l.path);
        const raw = await selectiveSearch(rgb, width, height, { ...preset, filter: false });
        assert.equal(raw.rawCount, l.rects!.length, `${l.path}: region count`);
        assert.deepEqual(toAuthorsRects(raw.boxes), uniqueRects(l.rects!), `${l.path}: raw boxes`);
        const filt = await selectiveSearch(rgb, width, height, preset);
        const want = authorsFilter(l.rects!, width, height);
        assert.equal(filt.filterStage, want.stage, `${l.path}: filter stage`);
        assert.deepEqual(toAuthorsRects(filt.boxes), uniqueRects(want.rects), `${l.path}: filtered boxes`);
        stages.add(filt.filterStage);
      }
    }
    assert.ok([...stages].some((s) => s > 0), `the cases should reach a fallback, got stages ${[...stages]}`);
  });

  it('is deterministic under concurrency and keeps the event loop free', async () => {
    const { rgb, width, height } = rgbOf(`${SKI}/coffee.png`);
    // The searches run on the libuv pool, so the event loop keeps turning while they run: counted
    // in turns of the loop (never timed; a busy machine only adds turns). Run on the loop itself,
    // they would all have finished before its first turn.
    let turns = 0;
    let running = true;
    const spin = (): void => { if (running) { turns++; setImmediate(spin); } };
    const searches = Array.from({ length: 6 }, () => selectiveSearch(rgb, width, height, PAPER_PRESET));
    setImmediate(spin);
    const runs = await Promise.all(searches);
    running = false;
    for (const r of runs.slice(1)) assert.deepEqual(r.boxes, runs[0].boxes);
    assert.ok(turns >= 3, `the event loop turned ${turns} times while 6 searches ran`);
  });

  it('downscales with maxSide and maps boxes back into the original image', async () => {
    const { rgb, width, height } = rgbOf(`${SKI}/astronaut.png`);
    const r = await selectiveSearch(rgb, width, height, { ...OFFICIAL_PRESET, maxSide: 200, filter: false });
    assert.equal(Math.max(r.width, r.height), 200);
    assert.ok(r.boxes.length > 0);
    let full = false;
    for (let i = 0; i < r.boxes.length; i += 4) {
      const [x0, y0, x1, y1] = r.boxes.subarray(i, i + 4);
      assert.ok(x0 >= 0 && y0 >= 0 && x1 <= width && y1 <= height && x0 < x1 && y0 < y1, `box ${[x0, y0, x1, y1]}`);
      if (x0 === 0 && y0 === 0 && x1 === width && y1 === height) full = true;
    }
    assert.ok(full, 'the last merge covers the whole image');
  });

  it('rejects bad arguments with errors that name them', async () => {
    const rgb = new Uint8Array(12);
    const ss = selectiveSearch as unknown as (...a: unknown[]) => Promise<unknown>;
    assert.throws(() => ss(new Float32Array(12), 2, 2), /'rgb'/);
    assert.throws(() => ss(rgb, 3, 2), /'rgb' has 12 bytes, expected width\*height\*3 = 18/);
    assert.throws(() => ss(rgb, 0, 2), /'width'/);
    assert.throws(() => ss(rgb, 2, 2.5), /'height'/);
    assert.throws(() => ss(rgb, 2, 2, { scale: -1 }), /params\.scale/);
    assert.throws(() => ss(rgb, 2, 2, { minSize: 'x' }), /params\.minSize/);
    assert.throws(() => ss(rgb, 2, 2, { filter: 1 }), /params\.filter/);
    // tiny and degenerate images work
    const one = await selectiveSearch(new Uint8Array([10, 20, 30]), 1, 1, PAPER_PRESET);
    assert.equal(one.rawCount, 1);
    assert.equal(one.filterStage, FilterStage.Empty);
  });

  it('converts between exact extents and the authors\' [x, y, w, h]', () => {
    const boxes = Int32Array.from([0, 0, 10, 20, 5, 6, 7, 8]);
    assert.deepEqual(toAuthorsRects(boxes), [[0, 0, 9, 19], [5, 6, 1, 1]]);
    assert.deepEqual(fromAuthorsRects([[0, 0, 9, 19], [5, 6, 1, 1], [0, 0, 9, 19]]), boxes);
    assert.throws(() => fromAuthorsRects([[1, 2, 3]]), /invalid rect/);
  });
});
