// BYOL augmentations (RECIPE.md "Views") on NCHW float images in [0, 1], on whatever device the
// batch lives on. Parameters are drawn per sample on the host from a seeded Rng (a few numbers per
// image, so the draw is identical on every device). On an accelerator each op runs once per batch
// as LibTorch ops on the subset of samples that needs it; on the CPU (float32) every op of an
// image runs fused in native code (native/image.cc augmentImages: a few cache-resident passes
// instead of ~40 small LibTorch ops per image). Both reproduce torchvision.transforms.functional
// (0.14, tensor path) with the same parameters, within 1/255 per pixel (test/augment.test.ts checks
// both on real photos against Debian's torchvision).
import { Tensor, cat, conv2d, empty, pad, tensor, tidy } from '../torch';
import { op, w } from '../torch/tensor';
import { native } from '../torch/native';
import { Rng } from './views_geometry';

// Ops this module needs that lib/torch does not expose yet.
const O = {
  indexCopy_: op('aten::index_copy_'),
  lerp: op('aten::lerp', 'Tensor'),
  addcmul: op('aten::addcmul'),
};
/** start + weight * (end - start), broadcasting. */
const lerp = (start: Tensor, end: Tensor, weight: Tensor): Tensor => w(native.call(O.lerp(), start.id, end.id, weight.id));
/** x + value * a * b, broadcasting. */
const addcmul = (x: Tensor, a: Tensor, b: Tensor, value = 1): Tensor => w(native.call(O.addcmul(), x.id, a.id, b.id, value));
// LibTorch's CPU `where` and comparisons are scalar loops (5-10x an add); selections below use
// 0/1 float masks made with sign().

/** Probabilities and ranges of one view's augmentations. */
export interface ViewAugmentation {
  flipProb: number;
  /** ColorJitter is applied with this probability; its four ops then run in a random order. */
  jitterProb: number;
  /** Factors ~ U[max(0, 1-b), 1+b] (brightness, contrast, saturation); hue ~ U[-hue, hue]. */
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  grayscaleProb: number;
  blurProb: number;
  blurSigma: [number, number];
  /** Odd kernel size of the blur in pixels (torchvision semantics: reflect padding, kernel/2). */
  blurKernel: number;
  solarizeProb: number;
  /** On [0, 1] images; pixels >= threshold are inverted. */
  solarizeThreshold: number;
  /** ImageNet mean/std; null leaves the images in [0, 1]. */
  normalize: { mean: [number, number, number]; std: [number, number, number] } | null;
}

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

/**
 * BYOL's augmentation of view `index` (0 = V1): blur p=1.0 on V1 and 0.1 on the others, solarize
 * p=0 on V1 and 0.2 on the others. Kernel 23: BYOL's 23x23 (10% of 224). The same kernel is used
 * for 112 and 192 views because sigma is in pixels and the authors' PIL blur never truncates by
 * view size (23 taps cover sigma=2 to 5.5 sigma).
 */
export function byolAugmentation(index: number): ViewAugmentation {
  return {
    flipProb: 0.5, jitterProb: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1,
    grayscaleProb: 0.2, blurProb: index === 0 ? 1.0 : 0.1, blurSigma: [0.1, 2.0], blurKernel: 23,
    solarizeProb: index === 0 ? 0 : 0.2, solarizeThreshold: 128 / 255,
    normalize: { mean: IMAGENET_MEAN, std: IMAGENET_STD },
  };
}

/** torchvision ColorJitter's op indices (fn_idx): the order below is the order they run in. */
export const enum JitterOp { Brightness = 0, Contrast = 1, Saturation = 2, Hue = 3 }

export interface JitterParams {
  /** A permutation of 0..3 (JitterOp), as torchvision's fn_idx. */
  order: number[];
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

/** The augmentation of one sample, fully determined (what torchvision would have drawn). */
export interface SampleAugment {
  flip: boolean;
  jitter: JitterParams | null;
  grayscale: boolean;
  /** Blur sigma, or null for no blur. */
  blurSigma: number | null;
  solarize: boolean;
}

function checkAugmentation(cfg: ViewAugmentation): void {
  const probs: (keyof ViewAugmentation)[] = ['flipProb', 'jitterProb', 'grayscaleProb', 'blurProb', 'solarizeProb'];
  for (const k of probs) {
    const v = cfg[k] as number;
    if (!(v >= 0 && v <= 1)) throw new RangeError(`augmentation: ${k} must be in [0, 1], got ${v}`);
  }
  for (const k of ['brightness', 'contrast', 'saturation'] as const)
    if (!(cfg[k] >= 0)) throw new RangeError(`augmentation: ${k} must be >= 0, got ${cfg[k]}`);
  if (!(cfg.hue >= 0 && cfg.hue <= 0.5)) throw new RangeError(`augmentation: hue must be in [0, 0.5], got ${cfg.hue}`);
  if (!(cfg.blurKernel >= 1 && cfg.blurKernel % 2 === 1)) throw new RangeError(`augmentation: blurKernel must be odd and positive, got ${cfg.blurKernel}`);
  if (!(cfg.blurSigma[0] > 0 && cfg.blurSigma[1] >= cfg.blurSigma[0]))
    throw new RangeError(`augmentation: blurSigma must be 0 < lo <= hi, got [${cfg.blurSigma}]`);
}

/**
 * Draws one sample's parameters. A fixed count of numbers is drawn whatever the outcome, so
 * changing one probability does not reshuffle the other draws. `flip` overrides the flip draw
 * (the view geometry decides flips, because boxes must follow them).
 */
export function sampleAugment(rng: Rng, cfg: ViewAugmentation, flip?: boolean): SampleAugment {
  const u = Array.from({ length: 13 }, () => rng.next());
  const order = [0, 1, 2, 3];
  for (let i = 3; i > 0; i--) {  // Fisher-Yates from u[2..4]
    const j = Math.floor(u[5 - i] * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const range = (v: number, t: number): number => Math.max(0, 1 - v) + (1 + v - Math.max(0, 1 - v)) * t;
  const drawFlip = u[0] < cfg.flipProb;
  return {
    flip: flip ?? drawFlip,
    jitter: u[1] < cfg.jitterProb ? {
      order, brightness: range(cfg.brightness, u[5]), contrast: range(cfg.contrast, u[6]),
      saturation: range(cfg.saturation, u[7]), hue: -cfg.hue + 2 * cfg.hue * u[8],
    } : null,
    grayscale: u[9] < cfg.grayscaleProb,
    blurSigma: u[10] < cfg.blurProb ? cfg.blurSigma[0] + (cfg.blurSigma[1] - cfg.blurSigma[0]) * u[11] : null,
    solarize: u[12] < cfg.solarizeProb,
  };
}

/** Parameters for a batch of n samples (flips from the geometry when given). */
export function sampleAugmentBatch(rng: Rng, n: number, cfg: ViewAugmentation, flips?: readonly boolean[]): SampleAugment[] {
  checkAugmentation(cfg);
  if (flips && flips.length !== n) throw new RangeError(`sampleAugmentBatch: ${flips.length} flips for ${n} samples`);
  return Array.from({ length: n }, (_, i) => sampleAugment(rng, cfg, flips?.[i]));
}

// ---- batched ops: x is [N, 3, H, W] float in [0, 1]; factors are one per sample ----

function checkImages(x: Tensor, what: string): [number, number, number, number] {
  const s = x.shape;
  if (s.length !== 4 || s[1] !== 3) throw new TypeError(`${what}: images must be [N, 3, H, W], got [${s}]`);
  if (x.dtype !== 'float32' && x.dtype !== 'float64' && x.dtype !== 'float16' && x.dtype !== 'bfloat16')
    throw new TypeError(`${what}: images must be floating point in [0, 1], got ${x.dtype}`);
  return s as [number, number, number, number];
}

/** A [N, 1, 1, 1] tensor of per-sample values on x's device and dtype. */
function perSample(x: Tensor, values: readonly number[], what: string): Tensor {
  if (values.length !== x.size(0)) throw new RangeError(`${what}: ${values.length} factors for ${x.size(0)} images`);
  return tensor(Float32Array.from(values), { shape: [values.length, 1, 1, 1] }).to(x.device, x.dtype);
}

/** ITU-R 601-2 luma as torchvision's rgb_to_grayscale: [N, 1, H, W]. */
export function rgbToGrayscale(x: Tensor): Tensor {
  checkImages(x, 'rgbToGrayscale');
  // A 1x1 convolution: one pass instead of five (same weights; sums differ by float rounding).
  return tidy(() => conv2d(x, tensor(Float32Array.of(0.2989, 0.587, 0.114), { shape: [1, 3, 1, 1] }).to(x.device, x.dtype)));
}

/** torchvision _blend: (f*a + (1-f)*b).clamp(0, 1), f per sample. */
function blend(a: Tensor, b: Tensor, f: readonly number[], what: string): Tensor {
  if (f.length !== a.size(0)) throw new RangeError(`${what}: ${f.length} factors for ${a.size(0)} images`);
  // One image: scalar operands, LibTorch's fastest kernels. Several: b + f*(a-b), one pass.
  if (f.length === 1) return tidy(() => a.mul(f[0]).add(b, 1 - f[0]).clamp(0, 1));
  return tidy(() => lerp(b, a, perSample(a, f, what)).clamp(0, 1));
}

export function adjustBrightness(x: Tensor, factors: readonly number[]): Tensor {
  checkImages(x, 'adjustBrightness');
  if (factors.length === 1 && x.size(0) === 1) return tidy(() => x.mul(factors[0]).clamp(0, 1));
  return tidy(() => x.mul(perSample(x, factors, 'adjustBrightness')).clamp(0, 1));
}

/** Blends with the per-image mean of the grayscale image. */
export function adjustContrast(x: Tensor, factors: readonly number[]): Tensor {
  checkImages(x, 'adjustContrast');
  return tidy(() => blend(x, rgbToGrayscale(x).mean([1, 2, 3], true), factors, 'adjustContrast'));
}

export function adjustSaturation(x: Tensor, factors: readonly number[]): Tensor {
  checkImages(x, 'adjustSaturation');
  return tidy(() => blend(x, rgbToGrayscale(x), factors, 'adjustSaturation'));
}

/**
 * Hue rotation by hue_factor (in turns, [-0.5, 0.5]) per sample, as torchvision's adjust_hue:
 * RGB -> HSV (torchvision's _rgb2hsv hue formula), h = (h + f) mod 1, HSV -> RGB. The HSV -> RGB
 * step uses the closed form out_c = V - V*S*clamp(min(k, 4-k), 0, 1), k = (n_c + 6h) mod 6,
 * n = (5, 3, 1): algebraically torchvision's six-sector table (V*(1-S) = min, V*S = max - min), in
 * a third of the passes, which matters on the CPU.
 */
export function adjustHue(x: Tensor, factors: readonly number[]): Tensor {
  const [n] = checkImages(x, 'adjustHue');
  for (const f of factors) if (!(f >= -0.5 && f <= 0.5)) throw new RangeError(`adjustHue: hue factor ${f} is not in [-0.5, 0.5]`);
  if (factors.length !== n) throw new RangeError(`adjustHue: ${factors.length} factors for ${n} images`);
  return tidy(() => {
    // Intermediates are freed as soon as they are used: the allocator then hands the same
    // (cache-hot) blocks to the next pass; about 20% faster on the CPU than holding them all.
    const done = (...ts: Tensor[]): void => ts.forEach((t) => t.dispose());
    const r = x.select(1, 0);
    const g = x.select(1, 1);
    const b = x.select(1, 2);
    let tmp = r.maximum(g);
    const maxc = tmp.maximum(b);
    done(tmp);
    tmp = r.minimum(g);
    const d = tmp.minimum(b).sub_(maxc).mul_(-1);  // max - min
    done(tmp);
    // 6*h*d as torchvision: max == r -> g-b; else max == g -> 2d + b-r; else 4d + r-g (that
    // priority). notR = sign(max - r) is 0 exactly where r is the max: a float mask in two cheap
    // passes (LibTorch's CPU comparisons and where() are 5-10x slower). When d == 0 the
    // numerator is 0 too and the hue does not matter (the output is V).
    tmp = maxc.sub(r);
    const notR = tmp.sign();
    done(tmp);
    tmp = maxc.sub(g);
    const notG = tmp.sign();
    done(tmp);
    const num = g.sub(b);
    const nb = r.sub(g).add_(d, 4);
    const ng = b.sub(r).add_(d, 2);
    ng.addcmul_(notG, nb.sub_(ng));  // ng where g is the max, else nb
    done(nb, notG);
    num.addcmul_(notR, ng.sub_(num));  // g-b where r is the max, else the above
    done(ng, notR);
    tmp = d.clampMin(1e-30);
    num.div_(tmp);  // 6h, in [-1, 5]
    done(tmp);
    // k = (n_c + 6*((h + f) mod 1)) mod 6 = (n_c + 6 + 6f + 6h) mod 6 on 3 channels, the mod as
    // y - 6*floor(y/6) (LibTorch's CPU remainder is ~5x slower than these three passes).
    const off = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) off[i * 3 + c] = [5, 3, 1][c] + 6 + 6 * factors[i];
    const k = num.unsqueeze(1).add(tensor(off, { shape: [n, 3, 1, 1] }).to(x.device, x.dtype));
    done(num);
    tmp = k.div(6);
    const fl = tmp.floor();
    done(tmp);
    k.sub_(fl, 6);
    done(fl);
    // out_c = V - (max - min) * clamp(min(k, 4 - k), 0, 1)
    tmp = k.rsub(4);
    const tri = tmp.minimum(k);
    done(tmp, k);
    const t = tri.clamp(0, 1);
    done(tri);
    return addcmul(maxc.unsqueeze(1), d.unsqueeze(1), t, -1);
  });
}

export function grayscale3(x: Tensor): Tensor {
  const [n, c, h, wd] = checkImages(x, 'grayscale');
  return tidy(() => rgbToGrayscale(x).expand(n, c, h, wd).contiguous());
}

/** torchvision solarize on float images: where(x >= threshold, 1 - x, x), as x + m*(1 - 2x). */
export function solarize(x: Tensor, threshold: number): Tensor {
  checkImages(x, 'solarize');
  return tidy(() => addcmul(x, x.ge(threshold).to(null, x.dtype), x.mul(-2).add(1)));
}

/**
 * torchvision's 1-D Gaussian kernel (exp(-x^2 / 2 sigma^2) on x in [-(k-1)/2, (k-1)/2], summed
 * to 1), with weights below 1e-20 set to 0: for small sigmas the far taps are float32 denormals,
 * which make the convolution ~4x slower on x86 for a difference of < 1e-19.
 */
export function blurKernel1d(size: number, sigma: number): Float32Array {
  const k = new Float64Array(size);
  const half = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) sum += k[i] = Math.exp(-0.5 * ((i - half) / sigma) ** 2);
  return Float32Array.from(k, (v) => (v / sum < 1e-20 ? 0 : v / sum));
}

/**
 * torchvision gaussian_blur with a square kernel and one sigma per image: reflect padding, then
 * the separable kernel as two depthwise convolutions over all N*3 planes at once (LibTorch's
 * depthwise convolution is ~4x faster per plane with 12+ groups than with 3).
 */
export function gaussianBlur(x: Tensor, kernelSize: number, sigmas: readonly number[]): Tensor {
  const [n, c, h, wd] = checkImages(x, 'gaussianBlur');
  if (sigmas.length !== n) throw new RangeError(`gaussianBlur: ${sigmas.length} sigmas for ${n} images`);
  if (!(kernelSize >= 1 && kernelSize % 2 === 1)) throw new RangeError(`gaussianBlur: kernel size must be odd and positive, got ${kernelSize}`);
  const half = (kernelSize - 1) / 2;
  if (half >= h || half >= wd) throw new RangeError(`gaussianBlur: kernel ${kernelSize} is too large for ${wd}x${h} images (reflect padding)`);
  for (const s of sigmas) if (!(s > 0)) throw new RangeError(`gaussianBlur: sigma must be > 0, got ${s}`);
  const weights = new Float32Array(n * c * kernelSize);
  for (let i = 0; i < n; i++) {
    const k = blurKernel1d(kernelSize, sigmas[i]);
    for (let j = 0; j < c; j++) weights.set(k, (i * c + j) * kernelSize);
  }
  return tidy(() => {
    const kx = tensor(weights, { shape: [n * c, 1, 1, kernelSize] }).to(x.device, x.dtype);
    const ky = kx.view(n * c, 1, kernelSize, 1);
    const planes = pad(x.reshape(1, n * c, h, wd), [half, half, half, half], 'reflect');
    const groups = n * c;
    return conv2d(conv2d(planes, kx, null, { groups }), ky, null, { groups }).reshape(n, c, h, wd);
  });
}

export function normalize(x: Tensor, mean: readonly number[], std: readonly number[]): Tensor {
  checkImages(x, 'normalize');
  return tidy(() => {
    // (x - m) / s as x * (1/s) + (-m/s): one pass instead of two, equal up to float rounding.
    const inv = tensor(Float32Array.from(std, (v) => 1 / v), { shape: [1, 3, 1, 1] }).to(x.device, x.dtype);
    const shift = tensor(Float32Array.from(mean, (v, i) => -v / std[i]), { shape: [1, 3, 1, 1] }).to(x.device, x.dtype);
    return addcmul(shift, x, inv);
  });
}

/**
 * Runs fn on the samples idx of x and writes the result back in place. The whole batch goes
 * through fn directly when every sample is selected (no gather/scatter).
 */
function onSubset(x: Tensor, idx: number[], fn: (sub: Tensor, idx: number[]) => Tensor): void {
  if (idx.length === 0) return;
  tidy(() => {
    if (idx.length === x.size(0)) {
      x.copy_(fn(x, idx));
      return;
    }
    const it = tensor(BigInt64Array.from(idx, BigInt)).to(x.device);
    native.call(O.indexCopy_(), x.id, 0, it.id, fn(x.indexSelect(0, it), idx).id);
  });
}

/**
 * Applies the augmentations to a batch, sample i with params[i], in BYOL's order: flip, colour
 * jitter (its four ops in the sample's order), grayscale, blur, solarize, normalise. Returns a new
 * tensor; x is left untouched.
 */
export interface AugmentOptions {
  /** How the colour jitter is batched: 'per-sample' (each image through its own op order; the
   * CPU default) or 'stepwise' (each op once per step on the images that run it there, by
   * gather/scatter: few kernel launches, the accelerator default). Same results. */
  jitter?: 'per-sample' | 'stepwise';
  /** 'native' (the CPU default for float32): every op of an image fused in one native pass
   * sequence (native/image.cc augmentImages), no LibTorch op per step. 'torch': LibTorch ops (any
   * device; the only choice off the CPU). Same results up to float rounding. */
  backend?: 'native' | 'torch';
}

export function augment(x: Tensor, params: readonly SampleAugment[], cfg: ViewAugmentation, opts: AugmentOptions = {}): Tensor {
  const [n, , h, wd] = checkImages(x, 'augment');
  if (params.length !== n) throw new RangeError(`augment: ${params.length} parameter sets for ${n} images`);
  checkAugmentation(cfg);
  const backend = opts.backend ?? (x.device === 'cpu' && x.dtype === 'float32' ? 'native' : 'torch');
  if (x.device === 'cpu') cpuMallocWarmup();
  if (backend === 'native') return augmentNative(x, params, cfg);
  if (x.device === 'cpu') {
    // On the CPU, a few images at a time keep each op's operands in L2 (measured: hue on 16
    // images of 224x224 costs 2x per image what it costs on 2-4).
    const chunk = Math.max(1, Math.round((4 * 224 * 224) / (h * wd)));
    if (n > chunk) {
      return tidy(() => {
        const parts: Tensor[] = [];
        for (let i = 0; i < n; i += chunk) {
          const m = Math.min(chunk, n - i);
          // index_select: a copy with its own storage (augmentBatch needs one anyway), not a
          // view of the whole batch, whose size the addon would report to V8 for every handle.
          const part = x.indexSelect(0, tensor(BigInt64Array.from({ length: m }, (_, k) => BigInt(i + k))));
          parts.push(tidy(() => augmentOwned(part, params.slice(i, i + m), cfg, opts)));
        }
        return cat(parts, 0);
      });
    }
  }
  return tidy(() => augmentOwned(x.to(null, undefined, { copy: true }), params, cfg, opts));
}

/** Numbers per image in augmentImages' params (native/image.cc AugField). */
const AUG_RECORD = 13;

/** augment() on a CPU float32 batch through native/image.cc augmentImages: one copy out of the
 * tensor, all ops of each image in place on that buffer, one copy into the result. */
function augmentNative(x: Tensor, params: readonly SampleAugment[], cfg: ViewAugmentation): Tensor {
  const [n, , h, wd] = x.shape;
  if (x.device !== 'cpu' || x.dtype !== 'float32') throw new TypeError(`augment: the native backend needs float32 CPU images, got ${x.dtype} on ${x.device}`);
  const enabled = [cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue].map((v) => v !== 0);
  const rec = new Float64Array(n * AUG_RECORD);
  const blurred = params.some((p) => p.blurSigma !== null);
  const half = (cfg.blurKernel - 1) / 2;
  if (blurred && (half >= h || half >= wd)) throw new RangeError(`gaussianBlur: kernel ${cfg.blurKernel} is too large for ${wd}x${h} images (reflect padding)`);
  const kernels = blurred ? new Float32Array(n * cfg.blurKernel) : null;
  params.forEach((p, i) => {
    const r = i * AUG_RECORD;
    rec[r] = p.flip ? 1 : 0;
    if (p.jitter) {
      rec[r + 1] = 1;
      // A zero range switches the op off, as torchvision's ColorJitter turns it into None.
      for (let k = 0; k < 4; k++) rec[r + 2 + k] = enabled[p.jitter.order[k]] ? p.jitter.order[k] : -1;
      rec[r + 6] = p.jitter.brightness;
      rec[r + 7] = p.jitter.contrast;
      rec[r + 8] = p.jitter.saturation;
      rec[r + 9] = p.jitter.hue;
      if (!(p.jitter.hue >= -0.5 && p.jitter.hue <= 0.5)) throw new RangeError(`adjustHue: hue factor ${p.jitter.hue} is not in [-0.5, 0.5]`);
    }
    rec[r + 10] = p.grayscale ? 1 : 0;
    if (p.blurSigma !== null) {
      if (!(p.blurSigma > 0)) throw new RangeError(`gaussianBlur: sigma must be > 0, got ${p.blurSigma}`);
      rec[r + 11] = 1;
      (kernels as Float32Array).set(blurKernel1d(cfg.blurKernel, p.blurSigma), i * cfg.blurKernel);
    }
    rec[r + 12] = p.solarize ? 1 : 0;
  });
  const norm = cfg.normalize ? Float32Array.from([...cfg.normalize.mean, ...cfg.normalize.std]) : null;
  const data = x.toTypedArray() as Float32Array;  // a contiguous copy: x stays untouched
  native.augmentImages(data, n, h, wd, rec, kernels, cfg.blurKernel, cfg.solarizeThreshold, norm);
  return tensor(data, { shape: [n, 3, h, wd] });
}

let mallocWarm = false;
/**
 * glibc returns the heap top to the OS whenever more than twice the largest freed mmap()ed block
 * is free, so image-sized temporaries are page-faulted in again on every op (measured here: 2x
 * the op's own time in the kernel). Freeing one 30 MB block raises that bound to 60 MB for the
 * rest of the process (glibc's dynamic mmap threshold); elsewhere it is a harmless allocation.
 */
function cpuMallocWarmup(): void {
  if (mallocWarm) return;
  mallocWarm = true;
  empty([(30 << 20) / 4]).dispose();
}

/** Augments `out` in place (a tensor the caller owns and no one else sees), then normalises. */
function augmentOwned(out: Tensor, params: readonly SampleAugment[], cfg: ViewAugmentation, opts: AugmentOptions): Tensor {
  const pick = (pred: (p: SampleAugment) => boolean): number[] => params.flatMap((p, i) => (pred(p) ? [i] : []));
  return tidy(() => {
    const enabled = [cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue].map((v) => v !== 0);
    const jitterOp = (o: number, s: Tensor, js: JitterParams[]): Tensor => {
      switch (o) {
        case JitterOp.Brightness: return adjustBrightness(s, js.map((j) => j.brightness));
        case JitterOp.Contrast: return adjustContrast(s, js.map((j) => j.contrast));
        case JitterOp.Saturation: return adjustSaturation(s, js.map((j) => j.saturation));
        default: return adjustHue(s, js.map((j) => j.hue));
      }
    };
    if ((opts.jitter ?? (out.device === 'cpu' ? 'per-sample' : 'stepwise')) === 'per-sample') {
      // Sample by sample, each through its own op order: no gather/scatter per (step, op), which
      // on the CPU costs as much as the cheaper ops themselves; kernel launches are free here.
      params.forEach((p, i) => {
        if (!p.flip && !p.jitter) return;
        tidy(() => {
          const one = out.narrow(0, i, 1);
          let y = p.flip ? one.flip(3) : one;
          if (p.jitter) for (const o of p.jitter.order) if (enabled[o]) y = jitterOp(o, y, [p.jitter]);
          one.copy_(y);
        });
      });
    } else {
      onSubset(out, pick((p) => p.flip), (s) => s.flip(3));
      // Step by step: at each step, each op runs once on the samples whose order puts it there.
      for (let step = 0; step < 4; step++) {
        for (let o = 0; o < 4; o++) {
          // A zero range switches the op off, as torchvision's ColorJitter turns it into None.
          if (!enabled[o]) continue;
          const idx = pick((p) => p.jitter !== null && p.jitter.order[step] === o);
          onSubset(out, idx, (s, ii) => jitterOp(o, s, ii.map((i) => params[i].jitter as JitterParams)));
        }
      }
    }
    onSubset(out, pick((p) => p.grayscale), (s) => grayscale3(s));
    onSubset(out, pick((p) => p.blurSigma !== null), (s, ii) => gaussianBlur(s, cfg.blurKernel, ii.map((i) => params[i].blurSigma as number)));
    onSubset(out, pick((p) => p.solarize), (s) => solarize(s, cfg.solarizeThreshold));
    return cfg.normalize ? normalize(out, cfg.normalize.mean, cfg.normalize.std) : out;
  });
}

/** Mirrors boxes [x1, y1, x2, y2] of a view of width `width` (what a flip does to them). */
export function flipBoxes(boxes: readonly [number, number, number, number][], width: number): [number, number, number, number][] {
  return boxes.map(([x1, y1, x2, y2]) => [width - x2, y1, width - x1, y2]);
}
