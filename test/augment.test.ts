// Batched BYOL augmentations against torchvision.transforms.functional (Debian's torchvision 0.14,
// tensor path), op by op and as the whole view pipeline, on real photos from test/fixtures.
// test/reference/augment_ref.py runs every op image by image with that image's scalar parameter;
// our ops run once per batch with per-sample parameters; the whole pipelines run both through the
// CPU's native fused kernel (the default there) and as LibTorch ops. Tolerance: 1/255 per pixel on the [0, 1]
// scale (normalised outputs are compared after multiplying the difference by std). Measured max
// differences are ~1e-6 (float rounding; hue uses an algebraically equal HSV->RGB form).
import { PYTHON } from './reference/python';
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tensor, tensor, stack, liveTensors, tidy } from '../lib/torch';
import { decodeImage } from '../lib/data/image';
import { Rng } from '../lib/data/views_geometry';
import {
  SampleAugment, ViewAugmentation, adjustBrightness, adjustContrast, adjustHue, adjustSaturation, augment,
  byolAugmentation, flipBoxes, gaussianBlur, grayscale3, normalize, sampleAugmentBatch, solarize, IMAGENET_MEAN,
  IMAGENET_STD,
} from '../lib/data/augment';

const ROOT = path.resolve(__dirname, '..', '..');
const PHOTOS = ['train/astronaut.png', 'train/chelsea.jpg', 'heldout/coffee.jpg', 'heldout/flower.jpg',
  'heldout/camera.png', 'train/china.jpg', 'train/face.jpg', 'train/rocket.jpg']
  .map((f) => path.join(ROOT, 'test', 'fixtures', 'images', f));
const TOL = 1 / 255;

/** The photos decoded and resized to size x size, as NCHW float in [0, 1]. */
async function photoBatch(size: number, files = PHOTOS): Promise<Tensor> {
  const imgs = await Promise.all(files.map((f) => decodeImage(f, { width: size, height: size })));
  return tidy(() => stack(imgs.map((im) => tensor(im.data, { shape: [size, size, 3] }).permute(2, 0, 1).float().div(255))));
}

interface Case { name: string; op: string; input: Tensor; ours: Tensor; scale?: readonly number[]; [k: string]: unknown }

function writeF32(file: string, t: Tensor): void {
  fs.writeFileSync(file, Buffer.from((tidy(() => t.contiguous().toTypedArray()) as Float32Array).buffer));
}

/** Runs the cases through augment_ref.py; returns max |ours - torchvision| per case. */
function compare(cases: Case[]): Map<string, number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-augment-'));
  try {
    const inputs = new Map<Tensor, string>();
    const spec = cases.map((c) => {
      let file = inputs.get(c.input);
      if (!file) {
        file = path.join(dir, `input${inputs.size}.f32`);
        writeF32(file, c.input);
        inputs.set(c.input, file);
      }
      const { input, ours, scale, ...rest } = c;
      return { ...rest, input: file, shape: input.shape };
    });
    fs.writeFileSync(path.join(dir, 'spec.json'), JSON.stringify({ cases: spec }));
    execFileSync(PYTHON, [path.join(ROOT, 'test', 'reference', 'augment_ref.py'), path.join(dir, 'spec.json')],
      { encoding: 'utf8' });
    const out = new Map<string, number>();
    for (const c of cases) {
      const ref = new Float32Array(fs.readFileSync(path.join(dir, `${c.name}.f32`)).buffer.slice(0));
      const ours = tidy(() => c.ours.contiguous().toTypedArray()) as Float32Array;
      assert.equal(ours.length, ref.length, `${c.name}: size`);
      const [, ch, h, wd] = c.ours.shape;
      let max = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(ours[i] - ref[i]) * (c.scale ? c.scale[Math.floor(i / (h * wd)) % ch] : 1);
        if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
      }
      out.set(c.name, max);
      if (process.env.SOCO_TEST_VERBOSE) console.log(`      ${c.name}: max diff ${max.toExponential(2)}`);
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const everything: ViewAugmentation = {
  ...byolAugmentation(1), flipProb: 0.5, jitterProb: 1, grayscaleProb: 0.3, blurProb: 0.7, solarizeProb: 0.5,
};

describe('augment: batched BYOL ops vs torchvision.transforms.functional', function () {
  let x224: Tensor;
  let x112: Tensor;
  let results: Map<string, number>;
  const cases: Case[] = [];

  before(async function () {
    x224 = await photoBatch(224);
    x112 = await photoBatch(112);
    const n = PHOTOS.length;
    const spread = (lo: number, hi: number): number[] => Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
    const add = (name: string, op: string, input: Tensor, ours: Tensor, extra: Record<string, unknown> = {}, scale?: readonly number[]): void => {
      cases.push({ name, op, input, ours, scale, ...extra });
    };
    const bf = spread(0.6, 1.4);
    add('brightness', 'brightness', x224, adjustBrightness(x224, bf), { factors: bf });
    add('contrast', 'contrast', x224, adjustContrast(x224, bf), { factors: bf });
    const cf = [0, 0.3, 2.5, 1.4, 0.6, 1, 0.95, 1.8];
    add('contrast-extreme', 'contrast', x224, adjustContrast(x224, cf), { factors: cf });
    const sf = spread(0.8, 1.2);
    add('saturation', 'saturation', x224, adjustSaturation(x224, sf), { factors: sf });
    const sx = [0, 2, 3.5, 0.1, 1, 1.5, 0.5, 5];
    add('saturation-extreme', 'saturation', x224, adjustSaturation(x224, sx), { factors: sx });
    const hf = spread(-0.1, 0.1);
    add('hue', 'hue', x224, adjustHue(x224, hf), { factors: hf });
    const hx = [-0.5, 0.5, 0.25, -0.25, 0.4999, -1 / 6, 1 / 3, 0.0001];
    add('hue-extreme', 'hue', x224, adjustHue(x224, hx), { factors: hx });
    add('hue-112', 'hue', x112, adjustHue(x112, hf), { factors: hf });
    // Hue after a saturation boost: the clamped, non-quantised values jitter produces in practice.
    const sat = adjustSaturation(x224, sx);
    add('hue-after-saturation', 'hue', sat, adjustHue(sat, hx), { factors: hx });
    add('grayscale', 'grayscale', x224, grayscale3(x224));
    const sg = spread(0.1, 2.0);
    add('blur', 'blur', x224, gaussianBlur(x224, 23, sg), { kernel: 23, sigmas: sg });
    add('blur-112', 'blur', x112, gaussianBlur(x112, 23, sg), { kernel: 23, sigmas: sg });
    add('blur-k9', 'blur', x112, gaussianBlur(x112, 9, sg), { kernel: 9, sigmas: sg });
    add('solarize', 'solarize', x224, solarize(x224, 128 / 255), { threshold: 128 / 255 });
    add('hflip', 'hflip', x224, x224.flip(3));
    add('normalize', 'normalize', x224, normalize(x224, IMAGENET_MEAN, IMAGENET_STD), { mean: IMAGENET_MEAN, std: IMAGENET_STD }, IMAGENET_STD);
    // Whole pipelines with drawn parameters: BYOL's V1 and V2 settings, and one that turns
    // everything on often, so each op meets the others' outputs.
    const pipelines: [string, Tensor, ViewAugmentation, number][] = [
      ['pipeline-v1', x224, byolAugmentation(0), 1], ['pipeline-v2', x224, byolAugmentation(1), 2],
      ['pipeline-v3', x112, byolAugmentation(2), 3], ['pipeline-all-a', x224, everything, 4],
      ['pipeline-all-b', x112, everything, 5], ['pipeline-all-c', x224, everything, 6],
    ];
    for (const [name, input, cfg, seed] of pipelines) {
      const params = sampleAugmentBatch(new Rng(seed), n, cfg);
      // The CPU default: the native fused kernel (native/image.cc augmentImages).
      add(name, 'pipeline', input, augment(input, params, cfg), { params, cfg }, IMAGENET_STD);
      // LibTorch ops, image by image, and the accelerator's batching (gather/scatter per step
      // and op), both run here on the CPU.
      add(`${name}-torch`, 'pipeline', input, augment(input, params, cfg, { backend: 'torch' }), { params, cfg }, IMAGENET_STD);
      add(`${name}-stepwise`, 'pipeline', input, augment(input, params, cfg, { backend: 'torch', jitter: 'stepwise' }), { params, cfg }, IMAGENET_STD);
    }
    results = compare(cases);
  });

  const names = ['brightness', 'contrast', 'contrast-extreme', 'saturation', 'saturation-extreme', 'hue', 'hue-extreme',
    'hue-112', 'hue-after-saturation', 'grayscale', 'blur', 'blur-112', 'blur-k9', 'solarize', 'hflip', 'normalize',
    'pipeline-v1', 'pipeline-v2', 'pipeline-v3', 'pipeline-all-a', 'pipeline-all-b', 'pipeline-all-c'].flatMap((p) =>
    p.startsWith('pipeline') ? [p, `${p}-torch`, `${p}-stepwise`] : [p]);
  for (const name of names) {
    it(`${name} within 1/255 of torchvision`, function () {
      const d = results.get(name);
      assert.ok(d !== undefined, `${name} was not compared`);
      assert.ok(d <= TOL, `${name}: max |ours - torchvision| = ${d} > 1/255`);
    });
  }

  it('the pipelines exercised every op', function () {
    const all = cases.filter((c) => c.op === 'pipeline').flatMap((c) => c.params as SampleAugment[]);
    assert.ok(all.some((p) => p.flip) && all.some((p) => !p.flip));
    assert.ok(all.some((p) => p.grayscale) && all.some((p) => p.solarize) && all.some((p) => p.blurSigma !== null));
    for (let step = 0; step < 4; step++)
      for (let o = 0; o < 4; o++) assert.ok(all.some((p) => p.jitter?.order[step] === o), `op ${o} never at step ${step}`);
  });

  it('leaves no tensor behind and does not modify its input', function () {
    const before = liveTensors();
    const copy = x224.clone();
    const params = sampleAugmentBatch(new Rng(9), PHOTOS.length, everything);
    augment(x224, params, everything).dispose();
    augment(x224, params, everything, { backend: 'torch' }).dispose();
    assert.equal(tidy(() => x224.sub(copy).abs().max().item()), 0);
    copy.dispose();
    assert.equal(liveTensors(), before);
  });

  it('names the bad argument', function () {
    assert.throws(() => adjustHue(x224, [0.7, 0, 0, 0, 0, 0, 0, 0]), /adjustHue: hue factor 0.7/);
    assert.throws(() => adjustBrightness(x224, [1, 1]), /adjustBrightness: 2 factors for 8 images/);
    assert.throws(() => augment(x224.select(1, 0), [], everything), /augment: images must be \[N, 3, H, W\]/);
    assert.throws(() => sampleAugmentBatch(new Rng(1), 2, { ...everything, blurKernel: 4 }), /blurKernel must be odd/);
    assert.throws(() => gaussianBlur(tensor(new Float32Array(3 * 8 * 8), { shape: [1, 3, 8, 8] }), 23, [1]), /too large for 8x8/);
    // The native CPU kernel checks what the LibTorch ops check.
    const small = tensor(new Float32Array(3 * 8 * 8), { shape: [1, 3, 8, 8] });
    const blurred: SampleAugment = { flip: false, jitter: null, grayscale: false, blurSigma: 1, solarize: false };
    assert.throws(() => augment(small, [blurred], everything), /too large for 8x8/);
    const hue: SampleAugment = { ...blurred, blurSigma: null, jitter: { order: [3, 0, 1, 2], brightness: 1, contrast: 1, saturation: 1, hue: 0.7 } };
    assert.throws(() => augment(small, [hue], everything), /adjustHue: hue factor 0.7/);
    small.dispose();
  });

  after(function () {
    for (const c of cases) {
      c.ours.dispose();
    }
    x224?.dispose();
    x112?.dispose();
  });
});

describe('augment: parameter draws', function () {
  it('are reproducible from the seed and differ across seeds', function () {
    const cfg = byolAugmentation(1);
    const a = sampleAugmentBatch(new Rng(42), 64, cfg);
    assert.deepEqual(sampleAugmentBatch(new Rng(42), 64, cfg), a);
    assert.notDeepEqual(sampleAugmentBatch(new Rng(43), 64, cfg), a);
  });

  it('follow the configured probabilities and ranges', function () {
    const n = 40000;
    for (const [view, cfg] of [0, 1].map((v) => [v, byolAugmentation(v)] as const)) {
      const ps = sampleAugmentBatch(new Rng(7 + view), n, cfg);
      const rate = (f: (p: SampleAugment) => boolean): number => ps.filter(f).length / n;
      const near = (got: number, want: number, what: string): void =>
        assert.ok(Math.abs(got - want) < 0.015, `view ${view} ${what}: rate ${got}, want ${want}`);
      near(rate((p) => p.flip), 0.5, 'flip');
      near(rate((p) => p.jitter !== null), 0.8, 'jitter');
      near(rate((p) => p.grayscale), 0.2, 'grayscale');
      near(rate((p) => p.blurSigma !== null), view === 0 ? 1 : 0.1, 'blur');
      near(rate((p) => p.solarize), view === 0 ? 0 : 0.2, 'solarize');
      const orders = new Map<string, number>();
      for (const p of ps) {
        if (p.blurSigma !== null) assert.ok(p.blurSigma >= 0.1 && p.blurSigma <= 2.0);
        if (!p.jitter) continue;
        const j = p.jitter;
        assert.deepEqual([...j.order].sort(), [0, 1, 2, 3]);
        orders.set(j.order.join(''), (orders.get(j.order.join('')) ?? 0) + 1);
        assert.ok(j.brightness >= 0.6 && j.brightness <= 1.4 && j.contrast >= 0.6 && j.contrast <= 1.4);
        assert.ok(j.saturation >= 0.8 && j.saturation <= 1.2 && j.hue >= -0.1 && j.hue <= 0.1);
      }
      assert.equal(orders.size, 24, 'every order of the four jitter ops occurs');
      const jittered = ps.filter((p) => p.jitter).length;
      for (const [o, c] of orders) assert.ok(Math.abs(c / jittered - 1 / 24) < 0.01, `order ${o}: ${c / jittered}`);
    }
  });

  it('take flips from the geometry when given, and flip boxes with the pixels', function () {
    const flips = [true, false, true];
    assert.deepEqual(sampleAugmentBatch(new Rng(1), 3, byolAugmentation(1), flips).map((p) => p.flip), flips);
    // A bright box drawn into an image lands, after the flip, where flipBoxes puts it.
    const img = new Float32Array(3 * 20 * 30);
    const box: [number, number, number, number] = [3, 5, 11, 9];
    for (let c = 0; c < 3; c++) for (let y = box[1]; y < box[3]; y++) for (let x = box[0]; x < box[2]; x++) img[c * 600 + y * 30 + x] = 1;
    const t = tensor(img, { shape: [1, 3, 20, 30] });
    const cfg = { ...byolAugmentation(1), jitterProb: 0, grayscaleProb: 0, blurProb: 0, solarizeProb: 0, normalize: null };
    const out = augment(t, [{ flip: true, jitter: null, grayscale: false, blurSigma: null, solarize: false }], cfg);
    const px = out.select(1, 0).toTypedArray() as Float32Array;
    const [fb] = flipBoxes([box], 30);
    for (let y = 0; y < 20; y++)
      for (let x = 0; x < 30; x++)
        assert.equal(px[y * 30 + x], x >= fb[0] && x < fb[2] && y >= fb[1] && y < fb[3] ? 1 : 0, `pixel ${x},${y}`);
    t.dispose();
    out.dispose();
  });
});
