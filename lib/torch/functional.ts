// Tensor creation and the neural-network functions (torch.* and torch.nn.functional.* equivalents).
import * as fs from 'fs';
import * as path from 'path';
import { native } from './native';
import { DType, Device, TypedArray, checkDevice, dtypeCode, dtypeOfArray } from './dtype';
import { Generator, Tensor, TorchError, op, w, ws } from './tensor';
import { tidy } from './scope';

const O = {
  zeros: op('aten::zeros'), ones: op('aten::ones'), full: op('aten::full'), empty: op('aten::empty', 'memory_format'),
  arange: op('aten::arange', 'start_step'), rand: op('aten::rand'), randG: op('aten::rand', 'generator'),
  randn: op('aten::randn'), randnG: op('aten::randn', 'generator'),
  randint: op('aten::randint', 'low'), randintG: op('aten::randint', 'low_generator'),
  randperm: op('aten::randperm'), randpermG: op('aten::randperm', 'generator'),
  conv2d: op('aten::conv2d'), batchNorm: op('aten::batch_norm'), linear: op('aten::linear'),
  maxPool2d: op('aten::max_pool2d'), avgPool2d: op('aten::avg_pool2d'), adaptiveAvgPool2d: op('aten::adaptive_avg_pool2d'),
  nearest: op('aten::upsample_nearest2d', 'vec'), bilinear: op('aten::upsample_bilinear2d', 'vec'),
  bilinearAA: op('aten::_upsample_bilinear2d_aa', 'vec'), pad: op('aten::pad'),
  cosineSimilarity: op('aten::cosine_similarity'), roiAlign: op('torchvision::roi_align'),
  foreachAdd_: op('aten::_foreach_add_', 'List'), foreachAddS_: op('aten::_foreach_add_', 'Scalar'),
  foreachMul_: op('aten::_foreach_mul_', 'List'), foreachMulS_: op('aten::_foreach_mul_', 'Scalar'),
  foreachMulSL_: op('aten::_foreach_mul_', 'ScalarList'), foreachAddcmul_: op('aten::_foreach_addcmul_', 'Scalar'),
  foreachNorm: op('aten::_foreach_norm', 'Scalar'), foreachZero_: op('aten::_foreach_zero_'),
};

export interface TensorOptions { dtype?: DType; device?: Device; requiresGrad?: boolean; pinMemory?: boolean }

function opts(o: TensorOptions): [number | null, null, string | null, boolean | null] {
  return [o.dtype ? dtypeCode[o.dtype] : null, null, o.device ? checkDevice(o.device) : null, o.pinMemory ?? null];
}

function finish(t: Tensor, o: TensorOptions): Tensor {
  return o.requiresGrad ? t.requiresGrad_(true) : t;
}

export function zeros(shape: number[], o: TensorOptions = {}): Tensor { return finish(w(native.call(O.zeros(), shape, ...opts(o))), o); }
export function ones(shape: number[], o: TensorOptions = {}): Tensor { return finish(w(native.call(O.ones(), shape, ...opts(o))), o); }
export function empty(shape: number[], o: TensorOptions = {}): Tensor { return finish(w(native.call(O.empty(), shape, ...opts(o))), o); }
export function full(shape: number[], value: number | boolean, o: TensorOptions = {}): Tensor { return finish(w(native.call(O.full(), shape, value, ...opts(o))), o); }
/** Values in [start, end) with step; integer arguments give int64 as in PyTorch. */
export function arange(start: number, end?: number, step = 1, o: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  return finish(w(native.call(O.arange(), start, end, step, ...opts(o))), o);
}
export function rand(shape: number[], o: TensorOptions & { generator?: Generator } = {}): Tensor {
  return finish(w(o.generator ? native.call(O.randG(), shape, o.generator.id, ...opts(o)) : native.call(O.rand(), shape, ...opts(o))), o);
}
export function randn(shape: number[], o: TensorOptions & { generator?: Generator } = {}): Tensor {
  return finish(w(o.generator ? native.call(O.randnG(), shape, o.generator.id, ...opts(o)) : native.call(O.randn(), shape, ...opts(o))), o);
}
/** Integers in [low, high). */
export function randint(low: number, high: number, shape: number[], o: TensorOptions & { generator?: Generator } = {}): Tensor {
  return w(o.generator ? native.call(O.randintG(), low, high, shape, o.generator.id, ...opts(o)) : native.call(O.randint(), low, high, shape, ...opts(o)));
}
export function randperm(n: number, o: TensorOptions & { generator?: Generator } = {}): Tensor {
  return w(o.generator ? native.call(O.randpermG(), n, o.generator.id, ...opts(o)) : native.call(O.randperm(), n, ...opts(o)));
}

type Nested = number | boolean | Nested[];

function flattenNested(data: Nested, shape: number[], out: number[], depth: number): void {
  if (!Array.isArray(data)) {
    if (depth !== shape.length) throw new TypeError('tensor(): ragged nested array');
    out.push(Number(data));
    return;
  }
  if (depth === shape.length) shape.push(data.length);
  else if (shape[depth] !== data.length) throw new TypeError('tensor(): ragged nested array');
  for (const d of data) flattenNested(d, shape, out, depth + 1);
}

/**
 * A CPU tensor copied from a TypedArray (flat, reshaped to `shape` when given) or from nested
 * arrays of numbers (float32 unless dtype says otherwise), then moved to `device`.
 */
export function tensor(data: TypedArray | Nested[], o: TensorOptions & { shape?: number[] } = {}): Tensor {
  let t: Tensor;
  if (ArrayBuffer.isView(data)) {
    const dtype = o.dtype ?? dtypeOfArray(data);
    if ((dtype === 'float16' || dtype === 'bfloat16') !== (data instanceof Uint16Array) && dtype !== 'bool')
      throw new TypeError(`tensor(): a ${data.constructor.name} cannot hold ${dtype}`);
    t = w(native.fromBuffer(data, o.shape ?? [data.length], dtypeCode[dtype]));
  } else {
    const shape: number[] = [];
    const flat: number[] = [];
    flattenNested(data, shape, flat, 0);
    const dtype = o.dtype ?? 'float32';
    let buf: TypedArray;
    switch (dtype) {
      case 'float32': buf = Float32Array.from(flat); break;
      case 'float64': buf = Float64Array.from(flat); break;
      case 'int64': buf = BigInt64Array.from(flat, (v) => BigInt(Math.trunc(v))); break;
      case 'int32': buf = Int32Array.from(flat); break;
      case 'uint8': case 'bool': buf = Uint8Array.from(flat); break;
      default: {
        const f = w(native.fromBuffer(Float32Array.from(flat), o.shape ?? shape, dtypeCode.float32));
        t = f.to(null, dtype);
        if (t !== f) f.dispose();
        return finish(o.device && o.device !== 'cpu' ? t.to(o.device) : t, o);
      }
    }
    t = w(native.fromBuffer(buf, o.shape ?? shape, dtypeCode[dtype]));
  }
  if (o.device && o.device !== 'cpu') {
    const moved = t.to(o.device, undefined, { nonBlocking: o.pinMemory });
    t.dispose();
    t = moved;
  }
  return finish(t, o);
}

/** A 0-dim tensor. */
export function scalarTensor(v: number, o: TensorOptions = {}): Tensor { return full([], v, { dtype: 'float32', ...o }); }

// ---- nn.functional ----

type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

export function conv2d(input: Tensor, weight: Tensor, bias: Tensor | null = null,
  o: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number } = {}): Tensor {
  return w(native.call(O.conv2d(), input.id, weight.id, bias ? bias.id : null, pair(o.stride ?? 1), pair(o.padding ?? 0), pair(o.dilation ?? 1), o.groups ?? 1));
}

/** Batch normalisation; in training mode the running statistics are updated in place. */
export function batchNorm(input: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  weight: Tensor | null, bias: Tensor | null, training: boolean, momentum = 0.1, eps = 1e-5): Tensor {
  return w(native.call(O.batchNorm(), input.id, weight?.id ?? null, bias?.id ?? null, runningMean?.id ?? null, runningVar?.id ?? null, training, momentum, eps, true));
}

export function linear(input: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  return w(native.call(O.linear(), input.id, weight.id, bias ? bias.id : null));
}

export function relu(x: Tensor): Tensor { return x.relu(); }

export function maxPool2d(x: Tensor, kernel: Pair, o: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {}): Tensor {
  return w(native.call(O.maxPool2d(), x.id, pair(kernel), pair(o.stride ?? kernel), pair(o.padding ?? 0), pair(o.dilation ?? 1), o.ceilMode ?? false));
}

export function avgPool2d(x: Tensor, kernel: Pair, o: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {}): Tensor {
  return w(native.call(O.avgPool2d(), x.id, pair(kernel), pair(o.stride ?? kernel), pair(o.padding ?? 0), o.ceilMode ?? false, o.countIncludePad ?? true, null));
}

export function adaptiveAvgPool2d(x: Tensor, size: Pair): Tensor {
  return w(native.call(O.adaptiveAvgPool2d(), x.id, pair(size)));
}

/**
 * Resizes NCHW images. mode 'nearest' or 'bilinear' (align_corners as given); antialias applies
 * to bilinear downsampling as in torchvision's resize.
 */
export function interpolate(x: Tensor, o: { size?: Pair; scaleFactor?: Pair; mode?: 'nearest' | 'bilinear'; alignCorners?: boolean; antialias?: boolean }): Tensor {
  if ((o.size === undefined) === (o.scaleFactor === undefined)) throw new TypeError('interpolate(): give exactly one of size and scaleFactor');
  const size = o.size === undefined ? null : pair(o.size);
  const scale = o.scaleFactor === undefined ? null : pair(o.scaleFactor);
  const mode = o.mode ?? 'nearest';
  if (mode === 'nearest') {
    if (o.antialias) throw new TypeError("interpolate(): antialias needs mode 'bilinear'");
    return w(native.call(O.nearest(), x.id, size, scale));
  }
  return w(native.call(o.antialias ? O.bilinearAA() : O.bilinear(), x.id, size, o.alignCorners ?? false, scale));
}

/** Pads the last dims: pads = [left, right, top, bottom, ...] as in F.pad. */
export function pad(x: Tensor, pads: number[], mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant', value = 0): Tensor {
  return w(native.call(O.pad(), x.id, pads, mode, mode === 'constant' ? value : null));
}

/** x / max(||x||_p, eps) along dim (F.normalize). */
export function normalize(x: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  return tidy(() => x.div(x.norm(p, dim, true).clampMin(eps)));
}

export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return w(native.call(O.cosineSimilarity(), a.id, b.id, dim, eps));
}

/** torchvision's 1-D Gaussian kernel: exp(-x^2 / 2 sigma^2) on x in [-(k-1)/2, (k-1)/2], summed to 1. */
export function gaussianKernel1d(size: number, sigma: number): Float32Array {
  const k = new Float32Array(size);
  const half = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = -half + i;
    k[i] = Math.exp(-0.5 * (x / sigma) ** 2);
    sum += k[i];
  }
  for (let i = 0; i < size; i++) k[i] /= sum;
  return k;
}

/**
 * Gaussian blur of NCHW images as two depthwise convolutions with reflect padding (torchvision's
 * F.gaussian_blur). `sigma` is one value or one per image (N values), so a batch can blur each
 * image with its own strength.
 */
export function gaussianBlur(x: Tensor, kernelSize: number, sigma: number | number[]): Tensor {
  if (kernelSize % 2 !== 1 || kernelSize < 1) throw new TypeError('gaussianBlur(): kernelSize must be odd and positive');
  const [n, c, h, wd] = x.shape;
  const sigmas = typeof sigma === 'number' ? [sigma] : sigma;
  if (sigmas.length !== 1 && sigmas.length !== n) throw new TypeError(`gaussianBlur(): ${sigmas.length} sigmas for ${n} images`);
  const per = sigmas.length > 1;
  const groups = per ? n * c : c;
  const kernels = new Float32Array(groups * kernelSize);
  for (let g = 0; g < groups; g++) kernels.set(gaussianKernel1d(kernelSize, sigmas[per ? Math.floor(g / c) : 0]), g * kernelSize);
  const half = (kernelSize - 1) / 2;
  return tidy(() => {
    const kx = tensor(kernels, { shape: [groups, 1, 1, kernelSize] }).to(x.device, x.dtype);
    const ky = kx.view(groups, 1, kernelSize, 1);
    const inp = per ? x.reshape(1, n * c, h, wd) : x;
    const blurred = conv2d(conv2d(pad(inp, [half, half, half, half], 'reflect'), kx, null, { groups }), ky, null, { groups });
    return per ? blurred.reshape(n, c, h, wd) : blurred;
  });
}

let torchvisionLoaded = false;

/** Finds and loads torchvision's operator library (it registers torchvision::roi_align). */
export function loadTorchvisionOps(): void {
  if (torchvisionLoaded) return;
  const candidates: string[] = [];
  if (process.env.SOCO_TORCHVISION_LIB) candidates.push(process.env.SOCO_TORCHVISION_LIB);
  for (const dir of ['/usr/lib/python3/dist-packages/torchvision']) {
    if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir)) if (/^_C[.\w-]*\.so$/.test(f)) candidates.push(path.join(dir, f));
  }
  if (!native.hasOp('torchvision::roi_align', '')) {
    const errors: string[] = [];
    for (const c of candidates) {
      try { native.loadLibrary(c); break; } catch (e) { errors.push((e as Error).message); }
    }
    if (!native.hasOp('torchvision::roi_align', ''))
      throw new TorchError(
        `torchvision's operator library was not found or did not load${errors.length ? ` (${errors.join('; ')})` : ''}. ` +
        'Fix: `apt-get install python3-torchvision` (Debian LibTorch) or set SOCO_TORCHVISION_LIB to the _C.so of the ' +
        'torchvision that matches your LibTorch.', 'torchvision::roi_align');
  }
  torchvisionLoaded = true;
}

/**
 * torchvision's RoIAlign. rois: [K, 5] (batch index, x1, y1, x2, y2) in input pixels before
 * spatialScale. Output [K, C, outH, outW]. Differentiable with respect to input.
 */
export function roiAlign(input: Tensor, rois: Tensor, outputSize: Pair, spatialScale = 1, samplingRatio = -1, aligned = true): Tensor {
  loadTorchvisionOps();
  const [oh, ow] = pair(outputSize);
  return w(native.call(O.roiAlign(), input.id, rois.id, spatialScale, oh, ow, samplingRatio, aligned));
}

// ---- multi-tensor ops for optimizers: one call for a whole parameter list ----
const ids = (ts: Tensor[]): number[] => ts.map((t) => t.id);
export function foreachAdd_(xs: Tensor[], ys: Tensor[] | number, alpha = 1): void {
  if (typeof ys === 'number') native.call(O.foreachAddS_(), ids(xs), ys);
  else native.call(O.foreachAdd_(), ids(xs), ids(ys), alpha);
}
export function foreachMul_(xs: Tensor[], ys: Tensor[] | number | number[]): void {
  if (typeof ys === 'number') native.call(O.foreachMulS_(), ids(xs), ys);
  else if (ys.length && typeof ys[0] === 'number') native.call(O.foreachMulSL_(), ids(xs), ys);
  else native.call(O.foreachMul_(), ids(xs), ids(ys as Tensor[]));
}
export function foreachAddcmul_(xs: Tensor[], as: Tensor[], bs: Tensor[], value = 1): void {
  native.call(O.foreachAddcmul_(), ids(xs), ids(as), ids(bs), value);
}
export function foreachNorm(xs: Tensor[], p = 2): Tensor[] { return ws(native.call(O.foreachNorm(), ids(xs), p)); }
export function foreachZero_(xs: Tensor[]): void { native.call(O.foreachZero_(), ids(xs)); }
