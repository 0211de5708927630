// Tensor creation and the neural-network functions (torch.* and torch.nn.functional.* equivalents).
import { native } from './native';
import { loadTorchvisionOps } from './build';
import { DType, Device, TypedArray, dtypeCode, dtypeOfArray } from './dtype';
import { Generator, Tensor, TorchError, cudaDeviceCount, op, resolveDevice, w, ws } from './tensor';
import { tidy } from './scope';
import { autocast, autocastState } from './autograd';

const O = {
  zeros: op('aten::zeros'), ones: op('aten::ones'), full: op('aten::full'), empty: op('aten::empty', 'memory_format'),
  zerosLike: op('aten::zeros_like'), onesLike: op('aten::ones_like'), fullLike: op('aten::full_like'), emptyLike: op('aten::empty_like'),
  arange: op('aten::arange', 'start_step'), linspace: op('aten::linspace'), eye: op('aten::eye'),
  rand: op('aten::rand'), randG: op('aten::rand', 'generator'),
  randn: op('aten::randn'), randnG: op('aten::randn', 'generator'),
  randint: op('aten::randint', 'low'), randintG: op('aten::randint', 'low_generator'),
  randperm: op('aten::randperm'), randpermG: op('aten::randperm', 'generator'),
  conv2d: op('aten::conv2d'), batchNorm: op('aten::batch_norm'), linear: op('aten::linear'),
  maxPool2d: op('aten::max_pool2d'), avgPool2d: op('aten::avg_pool2d'), adaptiveAvgPool2d: op('aten::adaptive_avg_pool2d'),
  nearest: op('aten::upsample_nearest2d', 'vec'), bilinear: op('aten::upsample_bilinear2d', 'vec'),
  bilinearAA: op('aten::_upsample_bilinear2d_aa', 'vec'), pad: op('aten::pad'),
  cosineSimilarity: op('aten::cosine_similarity'), crossEntropy: op('aten::cross_entropy_loss'),
  roiAlign: op('torchvision::roi_align'),
  foreachAdd_: op('aten::_foreach_add_', 'List'), foreachAddS_: op('aten::_foreach_add_', 'Scalar'), foreachAddSL_: op('aten::_foreach_add_', 'ScalarList'),
  foreachSub_: op('aten::_foreach_sub_', 'List'), foreachSubS_: op('aten::_foreach_sub_', 'Scalar'),
  foreachMul_: op('aten::_foreach_mul_', 'List'), foreachMulS_: op('aten::_foreach_mul_', 'Scalar'), foreachMulSL_: op('aten::_foreach_mul_', 'ScalarList'),
  foreachDiv_: op('aten::_foreach_div_', 'List'), foreachDivS_: op('aten::_foreach_div_', 'Scalar'), foreachDivSL_: op('aten::_foreach_div_', 'ScalarList'),
  foreachAddcmul_: op('aten::_foreach_addcmul_', 'Scalar'), foreachAddcdiv_: op('aten::_foreach_addcdiv_', 'Scalar'),
  foreachSqrt: op('aten::_foreach_sqrt'), foreachNorm: op('aten::_foreach_norm', 'Scalar'), foreachZero_: op('aten::_foreach_zero_'),
  foreachLerp_: op('aten::_foreach_lerp_', 'Scalar'),
};

export interface TensorOptions { dtype?: DType; device?: Device; requiresGrad?: boolean; pinMemory?: boolean }

function dtypeArg(d: DType | undefined, opName: string): number | null {
  if (d === undefined) return null;
  const code = dtypeCode[d];
  if (code === undefined) throw new TorchError(`unknown dtype '${d}'`, opName);
  return code;
}

function pinArg(pin: boolean | undefined, opName: string): boolean | null {
  if (pin && cudaDeviceCount() === 0)
    throw new TorchError('pinned memory needs CUDA, and cuda.isAvailable() is false here; leave pinMemory off on CPU-only machines', opName);
  return pin ?? null;
}

/** The trailing (dtype, layout, device, pin_memory) arguments of LibTorch's factory ops. */
function opts(o: TensorOptions, opName: string): [number | null, null, string | null, boolean | null] {
  return [dtypeArg(o.dtype, opName), null, o.device ? resolveDevice(o.device, opName) : null, pinArg(o.pinMemory, opName)];
}

function finish(t: Tensor, o: TensorOptions): Tensor {
  return o.requiresGrad ? t.requiresGrad_(true) : t;
}

export function zeros(shape: number[], o: TensorOptions = {}): Tensor { return finish(w(native.call(O.zeros(), shape, ...opts(o, 'zeros'))), o); }
export function ones(shape: number[], o: TensorOptions = {}): Tensor { return finish(w(native.call(O.ones(), shape, ...opts(o, 'ones'))), o); }
/** Uninitialised memory. */
export function empty(shape: number[], o: TensorOptions = {}): Tensor { return finish(w(native.call(O.empty(), shape, ...opts(o, 'empty'))), o); }
/**
 * Filled with value. dtype defaults to float32 (bool for a boolean): JS cannot tell 1 from 1.0,
 * so PyTorch's integer inference would turn full([2], 1) into int64 by surprise.
 */
export function full(shape: number[], value: number | boolean, o: TensorOptions = {}): Tensor {
  const dtype = o.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32');
  return finish(w(native.call(O.full(), shape, value, ...opts({ ...o, dtype }, 'full'))), o);
}
/** Same shape (and, unless given, dtype and device) as t. */
export function zerosLike(t: Tensor, o: TensorOptions = {}): Tensor { return finish(w(native.call(O.zerosLike(), t.id, ...opts(o, 'zeros_like'))), o); }
export function onesLike(t: Tensor, o: TensorOptions = {}): Tensor { return finish(w(native.call(O.onesLike(), t.id, ...opts(o, 'ones_like'))), o); }
export function emptyLike(t: Tensor, o: TensorOptions = {}): Tensor { return finish(w(native.call(O.emptyLike(), t.id, ...opts(o, 'empty_like'))), o); }
export function fullLike(t: Tensor, value: number | boolean, o: TensorOptions = {}): Tensor { return finish(w(native.call(O.fullLike(), t.id, value, ...opts(o, 'full_like'))), o); }
/** Values in [start, end) with step; all-integer arguments give int64 as in PyTorch (pass dtype for floats). */
export function arange(start: number, end?: number, step = 1, o: TensorOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  return finish(w(native.call(O.arange(), start, end, step, ...opts(o, 'arange'))), o);
}
/** `steps` evenly spaced values from start to end inclusive (float32 unless dtype says otherwise). */
export function linspace(start: number, end: number, steps: number, o: TensorOptions = {}): Tensor {
  return finish(w(native.call(O.linspace(), start, end, steps, ...opts({ dtype: 'float32', ...o }, 'linspace'))), o);
}
export function eye(n: number, o: TensorOptions = {}): Tensor { return finish(w(native.call(O.eye(), n, ...opts(o, 'eye'))), o); }

type RandomOptions = TensorOptions & { generator?: Generator };

/** Uniform in [0, 1). With a generator: that generator's stream (its device must match). */
export function rand(shape: number[], o: RandomOptions = {}): Tensor {
  return finish(w(o.generator ? native.call(O.randG(), shape, o.generator.id, ...opts(o, 'rand')) : native.call(O.rand(), shape, ...opts(o, 'rand'))), o);
}
export function randn(shape: number[], o: RandomOptions = {}): Tensor {
  return finish(w(o.generator ? native.call(O.randnG(), shape, o.generator.id, ...opts(o, 'randn')) : native.call(O.randn(), shape, ...opts(o, 'randn'))), o);
}
/** Integers in [low, high), int64 unless dtype says otherwise. */
export function randint(low: number, high: number, shape: number[], o: RandomOptions = {}): Tensor {
  const a = opts({ dtype: 'int64', ...o }, 'randint');
  return w(o.generator ? native.call(O.randintG(), low, high, shape, o.generator.id, ...a) : native.call(O.randint(), low, high, shape, ...a));
}
/** A random permutation of 0..n-1 (int64). */
export function randperm(n: number, o: RandomOptions = {}): Tensor {
  const a = opts({ dtype: 'int64', ...o }, 'randperm');
  return w(o.generator ? native.call(O.randpermG(), n, o.generator.id, ...a) : native.call(O.randperm(), n, ...a));
}

type Nested = number | boolean | Nested[];

function flattenNested(data: Nested, shape: number[], out: number[], depth: number): void {
  if (!Array.isArray(data)) {
    if (depth !== shape.length) throw new TorchError('ragged nested array (sub-arrays of different lengths or depths)', 'tensor');
    if (typeof data === 'number') out.push(data);
    else if (typeof data === 'boolean') out.push(data ? 1 : 0);
    else throw new TorchError(`nested arrays may hold numbers and booleans only, got ${data === null ? 'null' : typeof data}`, 'tensor');
    return;
  }
  if (depth === shape.length) {
    if (out.length > 0) throw new TorchError('ragged nested array (sub-arrays of different lengths or depths)', 'tensor');
    shape.push(data.length);
  } else if (depth > shape.length || shape[depth] !== data.length) {
    throw new TorchError('ragged nested array (sub-arrays of different lengths or depths)', 'tensor');
  }
  for (const d of data) flattenNested(d, shape, out, depth + 1);
}

function typedFrom(flat: number[], dtype: DType): TypedArray | null {
  switch (dtype) {
    case 'float32': return Float32Array.from(flat);
    case 'float64': return Float64Array.from(flat);
    case 'int64': return BigInt64Array.from(flat, (v) => {
      if (!Number.isInteger(v)) throw new TorchError(`int64 tensor from a non-integer ${v}`, 'tensor');
      return BigInt(v);
    });
    case 'int32': return Int32Array.from(flat);
    case 'uint8': return Uint8Array.from(flat);
    case 'bool': return Uint8Array.from(flat, (v) => (v !== 0 ? 1 : 0));
    default: return null;  // half types: converted from float32 by LibTorch (correct rounding)
  }
}

/**
 * A tensor copied from a TypedArray (flat, reshaped to `shape` when given; converted when `dtype`
 * differs from the array's; a Uint16Array holds raw float16/bfloat16 bits and needs dtype to say
 * which; a Uint8Array with dtype bool is read as 0/non-0) or from nested arrays of numbers/booleans
 * (float32 unless dtype says otherwise; all-boolean data gives bool). Built on the CPU, then
 * pinned and/or moved to `device` as asked.
 */
export function tensor(data: TypedArray | Nested[], o: TensorOptions & { shape?: number[] } = {}): Tensor {
  const device = o.device ? resolveDevice(o.device, 'tensor') : 'cpu';
  pinArg(o.pinMemory, 'tensor');
  let t: Tensor;
  if (ArrayBuffer.isView(data)) {
    if (o.dtype !== undefined && dtypeCode[o.dtype] === undefined) throw new TorchError(`unknown dtype '${o.dtype}'`, 'tensor');
    // The array's own dtype; a Uint16Array holds half-type bits, so it needs dtype to say which.
    let natural: DType;
    if (data instanceof Uint16Array) {
      if (o.dtype !== 'float16' && o.dtype !== 'bfloat16')
        throw new TorchError(`a Uint16Array holds float16 or bfloat16 bits: pass dtype 'float16' or 'bfloat16'${o.dtype ? `, not '${o.dtype}'` : ''}`, 'tensor');
      natural = o.dtype;
    } else {
      try {
        natural = dtypeOfArray(data);
      } catch (e) {
        throw new TorchError((e as Error).message, 'tensor');
      }
      if (natural === 'uint8' && o.dtype === 'bool') natural = 'bool';
    }
    t = w(native.fromBuffer(data, o.shape ?? [data.length], dtypeCode[natural]));
    // Another dtype than the array's converts, as torch.tensor(ndarray, dtype=...) does.
    if (o.dtype !== undefined && o.dtype !== natural) {
      const converted = t.to(null, o.dtype);
      t.dispose();
      t = converted;
    }
  } else if (Array.isArray(data)) {
    const shape: number[] = [];
    const flat: number[] = [];
    flattenNested(data, shape, flat, 0);
    const allBool = flat.length > 0 && isAllBool(data);
    const dtype: DType = o.dtype ?? (allBool ? 'bool' : 'float32');
    if (dtypeCode[dtype] === undefined) throw new TorchError(`unknown dtype '${dtype}'`, 'tensor');
    const buf = typedFrom(flat, dtype);
    if (buf) {
      t = w(native.fromBuffer(buf, o.shape ?? shape, dtypeCode[dtype]));
    } else {
      const f = w(native.fromBuffer(Float32Array.from(flat), o.shape ?? shape, dtypeCode.float32));
      t = f.to(null, dtype);
      f.dispose();
    }
  } else {
    throw new TorchError(`data must be a TypedArray or a (nested) array, got ${data === null ? 'null' : typeof data}`, 'tensor');
  }
  if (o.pinMemory) {
    const pinned = t.pinMemory();
    t.dispose();
    t = pinned;
  }
  if (device !== 'cpu') {
    const moved = t.to(device, undefined, { nonBlocking: o.pinMemory });
    t.dispose();
    t = moved;
  }
  return finish(t, o);
}

function isAllBool(data: Nested): boolean {
  return Array.isArray(data) ? data.every(isAllBool) : typeof data === 'boolean';
}

/** A 0-dim tensor (float32 unless dtype says otherwise). */
export function scalarTensor(v: number, o: TensorOptions = {}): Tensor { return full([], v, { dtype: 'float32', ...o }); }

/**
 * Calls any LibTorch (or loaded library) operator by schema name, for what the facade does not
 * wrap: callOp('aten::erf', '', x). Tensors (and arrays of them) are passed as they are; tensor
 * results come back as Tensors. In-place ops return their first argument.
 */
export function callOp(name: string, overload: string, ...args: unknown[]): unknown {
  const index: number = native.op(name, overload);
  const [key, schema, kinds, returnsSelf, argKinds] = native.opInfo(index) as [string, string, string, boolean, string];
  // Tensors travel as handle numbers, so a plain number in a tensor slot must not pass for one.
  const conv = (a: unknown, i: number): unknown => {
    const k = argKinds[i];
    if (a instanceof Tensor) {
      if (k !== 't') throw new TorchError(`argument ${i} is a Tensor, but the schema wants something else: ${schema}`, key);
      return a.id;
    }
    if (k === 't' && a !== null && a !== undefined) throw new TorchError(`argument ${i} must be a Tensor (or null), got ${typeof a}: ${schema}`, key);
    if (k === 'T') {
      if (!Array.isArray(a)) throw new TorchError(`argument ${i} must be an array of Tensors: ${schema}`, key);
      return a.map((x) => {
        if (x instanceof Tensor) return x.id;
        if (x === null || x === undefined) return null;
        throw new TorchError(`argument ${i} must be an array of Tensors, got an element of type ${typeof x}: ${schema}`, key);
      });
    }
    return a;
  };
  const raw = native.call(index, ...args.map(conv));
  if (returnsSelf) return args[0];
  const one = (kind: string, v: any): unknown => (kind === 't' ? (v === null ? null : w(v)) : kind === 'T' ? ws(v) : v);
  if (kinds.length === 0) return undefined;
  if (kinds.length === 1) return one(kinds, raw);
  return (raw as unknown[]).map((v, i) => one(kinds[i], v));
}

/** The schema of an operator, e.g. for error messages and tools. */
export function opSchema(name: string, overload = ''): string {
  return native.opInfo(native.op(name, overload))[1];
}

// ---- nn.functional ----

type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

export function conv2d(input: Tensor, weight: Tensor, bias: Tensor | null = null,
  o: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number } = {}): Tensor {
  const stride = pair(o.stride ?? 1), padding = pair(o.padding ?? 0);
  const low = oneDnnStridedEdgeHazard(input, stride, padding);
  if (low) {
    // oneDNN's bfloat16 weight-gradient kernels (LibTorch 1.13 and 2.11, AMX and AVX512) read
    // memory they never wrote when a strided, padded convolution sees a 1-pixel-wide input: the
    // padding taps' gradients come out as whatever was there (NaN in a busy process; a res5 conv
    // of a 16-pixel view). Such inputs are tiny, so they run in float32 with autocast off, and the
    // result has the low-precision dtype autocast would have given.
    return tidy(() => autocast('cpu', low, () => conv2d(input.to(null, 'float32'), weight.to(null, 'float32'), bias?.to(null, 'float32') ?? null, o), false)
      .to(null, low));
  }
  return w(native.call(O.conv2d(), input.id, weight.id, bias ? bias.id : null, stride, padding, pair(o.dilation ?? 1), o.groups ?? 1));
}

/** The low-precision dtype a CPU convolution of this input would run in, when its shape is one
 * that oneDNN's low-precision backward gets wrong (see conv2d); otherwise null. Cheapest checks
 * first: most convolutions are not strided, and the shape and autocast state are native calls. */
function oneDnnStridedEdgeHazard(input: Tensor, [sh, sw]: [number, number], [ph, pw]: [number, number]): 'bfloat16' | 'float16' | null {
  const wide = sw > 1 && pw > 0, high = sh > 1 && ph > 0;
  if (!wide && !high) return null;
  const shape = input.shape;
  if (!((wide && shape[shape.length - 1] === 1) || (high && shape[shape.length - 2] === 1)) || input.device !== 'cpu') return null;
  if (input.dtype === 'bfloat16' || input.dtype === 'float16') return input.dtype;
  const ac = autocastState('cpu');
  return ac.enabled && input.dtype === 'float32' && (ac.dtype === 'bfloat16' || ac.dtype === 'float16') ? ac.dtype : null;
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
  if ((o.size === undefined) === (o.scaleFactor === undefined)) throw new TorchError('give exactly one of size and scaleFactor', 'interpolate');
  const size = o.size === undefined ? null : pair(o.size);
  const scale = o.scaleFactor === undefined ? null : pair(o.scaleFactor);
  const mode = o.mode ?? 'nearest';
  if (mode !== 'nearest' && mode !== 'bilinear') throw new TorchError(`mode must be 'nearest' or 'bilinear', got '${mode}'`, 'interpolate');
  if (mode === 'nearest') {
    if (o.antialias) throw new TorchError("antialias needs mode 'bilinear'", 'interpolate');
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
  if (!Number.isInteger(kernelSize) || kernelSize % 2 !== 1 || kernelSize < 1) throw new TorchError(`kernelSize must be odd and positive, got ${kernelSize}`, 'gaussianBlur');
  const [n, c, h, wd] = x.shape;
  const sigmas = typeof sigma === 'number' ? [sigma] : sigma;
  if (sigmas.length !== 1 && sigmas.length !== n) throw new TorchError(`${sigmas.length} sigmas for ${n} images`, 'gaussianBlur');
  if (!sigmas.every((s) => s > 0)) throw new TorchError(`sigma must be positive, got [${sigmas}]`, 'gaussianBlur');
  if (x.ndim !== 4) throw new TorchError(`input must be NCHW, got shape [${x.shape}]`, 'gaussianBlur');
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

/**
 * torchvision's RoIAlign. rois: [K, 5] (batch index, x1, y1, x2, y2) in input pixels before
 * spatialScale. Output [K, C, outH, outW]. Differentiable with respect to input.
 */
export function roiAlign(input: Tensor, rois: Tensor, outputSize: Pair, spatialScale = 1, samplingRatio = -1, aligned = true): Tensor {
  loadTorchvisionOps();
  const [oh, ow] = pair(outputSize);
  if (input.dtype === 'bfloat16' || input.dtype === 'float16') {
    // torchvision's autocast rule for roi_align (float32 inside, the result in the input's dtype),
    // applied on every device: its CPU kernels reject bfloat16 and features/boxes of two dtypes.
    return tidy(() => roiAlign(input.to(null, 'float32'), rois.to(null, 'float32'), [oh, ow], spatialScale, samplingRatio, aligned)
      .to(null, input.dtype));
  }
  return w(native.call(O.roiAlign(), input.id, rois.id, spatialScale, oh, ow, samplingRatio, aligned));
}

/** Softmax along dim. */
export function softmax(x: Tensor, dim: number): Tensor { return x.softmax(dim); }
export function logSoftmax(x: Tensor, dim: number): Tensor { return x.logSoftmax(dim); }

/** F.cross_entropy over class logits [N, C] (or [N, C, ...]) and int64 targets. */
export function crossEntropy(logits: Tensor, target: Tensor, o: { reduction?: 'none' | 'mean' | 'sum'; ignoreIndex?: number; labelSmoothing?: number } = {}): Tensor {
  const reduction = { none: 0, mean: 1, sum: 2 }[o.reduction ?? 'mean'];
  if (reduction === undefined) throw new TorchError(`reduction must be 'none', 'mean' or 'sum', got '${o.reduction}'`, 'cross_entropy');
  return w(native.call(O.crossEntropy(), logits.id, target.id, null, reduction, o.ignoreIndex ?? -100, o.labelSmoothing ?? 0));
}

// ---- multi-tensor ops for optimizers: one call for a whole parameter list ----
// LibTorch runs these as fused kernels on CUDA (one launch per chunk of tensors), per tensor on CPU.
const ids = (ts: Tensor[]): number[] => ts.map((t) => t.id);
const isNumbers = (v: unknown[]): v is number[] => v.length > 0 && typeof v[0] === 'number';

/** xs[i] += alpha * ys[i]; or xs[i] += ys (a number), or += ys[i] (one number per tensor). */
export function foreachAdd_(xs: Tensor[], ys: Tensor[] | number | number[], alpha = 1): void {
  if (typeof ys === 'number') native.call(O.foreachAddS_(), ids(xs), ys * alpha);
  else if (isNumbers(ys)) native.call(O.foreachAddSL_(), ids(xs), ys.map((v) => v * alpha));
  else native.call(O.foreachAdd_(), ids(xs), ids(ys as Tensor[]), alpha);
}
/** xs[i] -= alpha * ys[i]; or -= a number. */
export function foreachSub_(xs: Tensor[], ys: Tensor[] | number, alpha = 1): void {
  if (typeof ys === 'number') native.call(O.foreachSubS_(), ids(xs), ys * alpha);
  else native.call(O.foreachSub_(), ids(xs), ids(ys), alpha);
}
/** xs[i] *= ys[i] (tensors, broadcasting), a number, or one number per tensor. */
export function foreachMul_(xs: Tensor[], ys: Tensor[] | number | number[]): void {
  if (typeof ys === 'number') native.call(O.foreachMulS_(), ids(xs), ys);
  else if (isNumbers(ys)) native.call(O.foreachMulSL_(), ids(xs), ys);
  else native.call(O.foreachMul_(), ids(xs), ids(ys as Tensor[]));
}
export function foreachDiv_(xs: Tensor[], ys: Tensor[] | number | number[]): void {
  if (typeof ys === 'number') native.call(O.foreachDivS_(), ids(xs), ys);
  else if (isNumbers(ys)) native.call(O.foreachDivSL_(), ids(xs), ys);
  else native.call(O.foreachDiv_(), ids(xs), ids(ys as Tensor[]));
}
/** xs[i] += value * as[i] * bs[i] */
export function foreachAddcmul_(xs: Tensor[], as: Tensor[], bs: Tensor[], value = 1): void {
  native.call(O.foreachAddcmul_(), ids(xs), ids(as), ids(bs), value);
}
/** xs[i] += value * as[i] / bs[i] */
export function foreachAddcdiv_(xs: Tensor[], as: Tensor[], bs: Tensor[], value = 1): void {
  native.call(O.foreachAddcdiv_(), ids(xs), ids(as), ids(bs), value);
}
let fusedLerp: boolean | undefined;
/** xs[i] += weight * (ends[i] - xs[i]): the EMA update of a target network. */
export function foreachLerp_(xs: Tensor[], ends: Tensor[], weight: number): void {
  // _foreach_lerp_ arrived in PyTorch 2.0; on older LibTorch the same update in two fused steps.
  fusedLerp ??= native.hasOp('aten::_foreach_lerp_', 'Scalar') as boolean;
  if (fusedLerp) {
    native.call(O.foreachLerp_(), ids(xs), ids(ends), weight);
  } else {
    native.call(O.foreachMulS_(), ids(xs), 1 - weight);
    native.call(O.foreachAdd_(), ids(xs), ids(ends), weight);
  }
}
/** dst[i] <- src[i] (no fused op before PyTorch 2.1: one copy_ per tensor). */
export function foreachCopy_(dst: Tensor[], src: Tensor[]): void {
  if (dst.length !== src.length) throw new TorchError(`${dst.length} destinations for ${src.length} sources`, 'foreach_copy_');
  for (let i = 0; i < dst.length; i++) dst[i].copy_(src[i]);
}
export function foreachSqrt(xs: Tensor[]): Tensor[] { return ws(native.call(O.foreachSqrt(), ids(xs))); }
/** The p-norm of each tensor, as 0-dim tensors (stack() them for one vector). */
export function foreachNorm(xs: Tensor[], p = 2): Tensor[] { return ws(native.call(O.foreachNorm(), ids(xs), p)); }
export function foreachZero_(xs: Tensor[]): void { native.call(O.foreachZero_(), ids(xs)); }
