// Tensor: a handle into the addon's tensor table, with the operations the rest of soco-train uses.
// Every op is one boxed LibTorch dispatcher call, so autograd, autocast and CUDA behave as in Python.
import { inspect } from 'util';
import { native } from './native';
import { Owned, adopt, release } from './scope';
import { DType, Device, TypedArray, arrayFor, dtypeCode, dtypeFromCode, dtypeOfArray, checkDevice } from './dtype';

/** An error raised by LibTorch or by argument checking, naming the operator. */
export class TorchError extends Error {
  override name = 'TorchError';
  constructor(message: string, readonly op: string) {
    super(`${op}: ${message}`);
  }
}
native.setErrorClass(TorchError);

const exposed: [string, string][] = [];

/** Every operator the facade calls (name, overload): what test/op_property.test.ts fuzzes. */
export function exposedOps(): readonly (readonly [string, string])[] { return exposed; }

/** Resolves an operator once; torchvision's ops resolve on first use (after their library loads). */
export function op(name: string, overload = ''): () => number {
  exposed.push([name, overload]);
  let index = -1;
  return () => (index >= 0 ? index : (index = native.op(name, overload)));
}

let cudaCount = -1;
/** Number of CUDA devices LibTorch sees (0 for a CPU-only LibTorch); cached, it cannot change. */
export function cudaDeviceCount(): number {
  return cudaCount >= 0 ? cudaCount : (cudaCount = native.cudaDeviceCount());
}

/**
 * Checks a device string and that the device exists here, so that asking for CUDA on a CPU
 * machine says so instead of LibTorch's list of dispatch keys.
 */
export function resolveDevice(d: Device, opName: string): Device {
  if (typeof d !== 'string') throw new TorchError(`device must be a string such as 'cpu' or 'cuda:0', got ${typeof d}`, opName);
  try {
    checkDevice(d);
  } catch (e) {
    throw new TorchError((e as Error).message, opName);
  }
  if (d !== 'cpu') {
    const n = cudaDeviceCount();
    const index = d === 'cuda' ? 0 : Number(d.slice(5));
    if (index >= n)
      throw new TorchError(n === 0
        ? `device '${d}' is not available: ${native.buildInfo().cuda ? 'no CUDA GPU is visible' : 'this LibTorch was built without CUDA'} (cuda.isAvailable() is false)`
        : `device '${d}' is not available: ${n} CUDA device(s)`, opName);
  }
  return d;
}

const O = {
  add: op('aten::add', 'Tensor'), addS: op('aten::add', 'Scalar'),
  sub: op('aten::sub', 'Tensor'), subS: op('aten::sub', 'Scalar'), rsubS: op('aten::rsub', 'Scalar'),
  mul: op('aten::mul', 'Tensor'), mulS: op('aten::mul', 'Scalar'),
  div: op('aten::div', 'Tensor'), divS: op('aten::div', 'Scalar'),
  pow: op('aten::pow', 'Tensor_Tensor'), powS: op('aten::pow', 'Tensor_Scalar'),
  remainder: op('aten::remainder', 'Tensor'), remainderS: op('aten::remainder', 'Scalar'),
  fmod: op('aten::fmod', 'Tensor'), fmodS: op('aten::fmod', 'Scalar'),
  atan2: op('aten::atan2'), lerp: op('aten::lerp', 'Scalar'), lerpT: op('aten::lerp', 'Tensor'),
  add_: op('aten::add_', 'Tensor'), addS_: op('aten::add_', 'Scalar'),
  sub_: op('aten::sub_', 'Tensor'), subS_: op('aten::sub_', 'Scalar'),
  mul_: op('aten::mul_', 'Tensor'), mulS_: op('aten::mul_', 'Scalar'),
  div_: op('aten::div_', 'Tensor'), divS_: op('aten::div_', 'Scalar'),
  copy_: op('aten::copy_'), zero_: op('aten::zero_'), fill_: op('aten::fill_', 'Scalar'),
  clamp_: op('aten::clamp_'), clampMin_: op('aten::clamp_min_'), clampMax_: op('aten::clamp_max_'),
  uniform_: op('aten::uniform_'), normal_: op('aten::normal_'), bernoulli_: op('aten::bernoulli_', 'float'),
  lerp_: op('aten::lerp_', 'Scalar'), lerpT_: op('aten::lerp_', 'Tensor'), addcmul_: op('aten::addcmul_'), addcdiv_: op('aten::addcdiv_'),
  sqrt_: op('aten::sqrt_'), maskedFill_: op('aten::masked_fill_', 'Scalar'), indexPut_: op('aten::index_put_'),
  indexCopy_: op('aten::index_copy_'), indexCopy: op('aten::index_copy'), indexAdd_: op('aten::index_add_'), indexAdd: op('aten::index_add'),
  addcmul: op('aten::addcmul'), addcdiv: op('aten::addcdiv'),
  neg: op('aten::neg'), abs: op('aten::abs'), exp: op('aten::exp'), log: op('aten::log'), log1p: op('aten::log1p'),
  sqrt: op('aten::sqrt'), rsqrt: op('aten::rsqrt'), square: op('aten::square'), sin: op('aten::sin'), cos: op('aten::cos'),
  sigmoid: op('aten::sigmoid'), tanh: op('aten::tanh'), relu: op('aten::relu'), relu_: op('aten::relu_'),
  floor: op('aten::floor'), ceil: op('aten::ceil'), round: op('aten::round'), trunc: op('aten::trunc'), sign: op('aten::sign'),
  reciprocal: op('aten::reciprocal'), softmax: op('aten::softmax', 'int'), logSoftmax: op('aten::log_softmax', 'int'),
  clamp: op('aten::clamp'), clampMin: op('aten::clamp_min'), clampMax: op('aten::clamp_max'),
  maximum: op('aten::maximum'), minimum: op('aten::minimum'),
  isnan: op('aten::isnan'), isfinite: op('aten::isfinite'),
  eq: op('aten::eq', 'Tensor'), eqS: op('aten::eq', 'Scalar'), ne: op('aten::ne', 'Tensor'), neS: op('aten::ne', 'Scalar'),
  lt: op('aten::lt', 'Tensor'), ltS: op('aten::lt', 'Scalar'), le: op('aten::le', 'Tensor'), leS: op('aten::le', 'Scalar'),
  gt: op('aten::gt', 'Tensor'), gtS: op('aten::gt', 'Scalar'), ge: op('aten::ge', 'Tensor'), geS: op('aten::ge', 'Scalar'),
  logicalAnd: op('aten::logical_and'), logicalOr: op('aten::logical_or'), logicalNot: op('aten::logical_not'), logicalXor: op('aten::logical_xor'),
  where: op('aten::where', 'self'), whereSS: op('aten::where', 'Scalar'), whereST: op('aten::where', 'ScalarSelf'), whereTS: op('aten::where', 'ScalarOther'),
  maskedFill: op('aten::masked_fill', 'Scalar'), equal: op('aten::equal'), allclose: op('aten::allclose'),
  sum: op('aten::sum'), sumDim: op('aten::sum', 'dim_IntList'), mean: op('aten::mean'), meanDim: op('aten::mean', 'dim'),
  maxAll: op('aten::max'), minAll: op('aten::min'), maxDim: op('aten::max', 'dim'), minDim: op('aten::min', 'dim'),
  amax: op('aten::amax'), amin: op('aten::amin'), logsumexp: op('aten::logsumexp'),
  argmax: op('aten::argmax'), argmin: op('aten::argmin'), prod: op('aten::prod'),
  norm: op('aten::linalg_vector_norm'), std: op('aten::std', 'correction'), var: op('aten::var', 'correction'),
  all: op('aten::all'), any: op('aten::any'), allDim: op('aten::all', 'dim'), anyDim: op('aten::any', 'dim'), cumsum: op('aten::cumsum'),
  sort: op('aten::sort'), argsort: op('aten::argsort'), topk: op('aten::topk'), nonzero: op('aten::nonzero'),
  matmul: op('aten::matmul'), mm: op('aten::mm'), bmm: op('aten::bmm'),
  reshape: op('aten::reshape'), view: op('aten::view'), permute: op('aten::permute'),
  transpose: op('aten::transpose', 'int'), contiguous: op('aten::contiguous'), flatten: op('aten::flatten', 'using_ints'),
  unsqueeze: op('aten::unsqueeze'), squeeze: op('aten::squeeze', 'dim'), squeezeAll: op('aten::squeeze'),
  narrow: op('aten::narrow'), slice: op('aten::slice', 'Tensor'), select: op('aten::select', 'int'),
  indexSelect: op('aten::index_select'), gather: op('aten::gather'), index: op('aten::index', 'Tensor'),
  scatter: op('aten::scatter', 'src'), scatterS: op('aten::scatter', 'value'), scatterAdd: op('aten::scatter_add'),
  flip: op('aten::flip'), roll: op('aten::roll'), expand: op('aten::expand'), expandAs: op('aten::expand_as'), repeat: op('aten::repeat'),
  cat: op('aten::cat'), stack: op('aten::stack'), split: op('aten::split', 'Tensor'), splitSizes: op('aten::split_with_sizes'),
  chunk: op('aten::chunk'), unbind: op('aten::unbind', 'int'),
  clone: op('aten::clone'), detach: op('aten::detach'), detach_: op('aten::detach_'), retainGrad: op('aten::retain_grad'),
  toDtype: op('aten::to', 'dtype'), toDevice: op('aten::to', 'device'),
  pinMemory: op('aten::pin_memory'), isPinned: op('aten::is_pinned'),
};

export type Scalar = number | boolean;
export type TensorLike = Tensor | Scalar;
/** Sizes given either as separate numbers or as one array, as PyTorch accepts both. */
type Sizes = number[] | [number[]];
const sizes = (s: Sizes): number[] => (s.length === 1 && Array.isArray(s[0]) ? s[0] : (s as number[]));

interface Meta { dtype: DType; device: Device; shape: number[] }

export class Tensor implements Owned {
  /** Handle in the addon's tensor table; -1 once disposed. */
  id: number;
  /** Whether the GC backstop holds this wrapper (only once it lives outside tidy scopes, see scope.ts). */
  registered = false;
  private meta_: Meta | undefined;

  constructor(id: number) {
    this.id = id;
    // Inside tidy() the scope frees the tensor; only tensors that escape every scope need the
    // (costlier) GC backstop, and adopt() registers those when they leave.
    adopt(this);
  }

  // ---- lifetime ----
  get isDisposed(): boolean { return this.id < 0; }

  /** Frees the tensor's handle now (the memory goes when no other handle or view holds it). Idempotent. */
  dispose(): void {
    if (this.id < 0) return;
    release(this);
    native.free(this.id);
    this.id = -1;
  }

  /** For tidy(): marks this disposed and returns the handle, which the caller frees (in bulk). */
  takeHandle(): number {
    const id = this.id;
    release(this);
    this.id = -1;
    return id;
  }

  private m(): Meta {
    if (this.id < 0) throw new TorchError('this tensor is disposed', 'Tensor');
    if (this.meta_) return this.meta_;
    const raw: any[] = native.meta(this.id);
    return (this.meta_ = { dtype: dtypeFromCode(raw[0]), device: raw[1], shape: raw.slice(3) });
  }

  // ---- properties ----
  get shape(): number[] { return this.m().shape.slice(); }
  get dtype(): DType { return this.m().dtype; }
  get device(): Device { return this.m().device; }
  get ndim(): number { return this.m().shape.length; }
  get numel(): number { return this.m().shape.reduce((a, b) => a * b, 1); }
  size(dim: number): number {
    const s = this.m().shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (!Number.isInteger(d) || d < 0 || d >= s.length) throw new TorchError(`dim ${dim} is out of range for a ${s.length}-d tensor`, 'size');
    return s[d];
  }
  get requiresGrad(): boolean { return (native.meta(this.id)[2] & 1) !== 0; }
  /** True for tensors not produced by a recorded op (parameters, inputs, detached results). */
  get isLeaf(): boolean { return (native.meta(this.id)[2] & 2) !== 0; }
  get isContiguous(): boolean { return (native.meta(this.id)[2] & 4) !== 0; }

  // ---- data out ----
  /** A copy of the data: Float32Array for float32, BigInt64Array for int64, raw bits for half types. */
  toTypedArray(): TypedArray { return native.toBuffer(this.id); }
  /** A copy of the data as plain numbers, flattened (bool as 0/1, half types as their values). */
  toArray(): number[] {
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') {
      const f = this.float();
      try { return f.toArray(); } finally { f.dispose(); }
    }
    const a = this.toTypedArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a as ArrayLike<number>);
  }
  /** The value of a one-element tensor (a host sync on CUDA). */
  item(): number {
    const v = native.item(this.id);
    return typeof v === 'boolean' ? Number(v) : v;
  }

  // ---- autograd ----
  requiresGrad_(flag = true): this { native.setRequiresGrad(this.id, flag); return this; }
  /** The accumulated gradient (a new handle each call; dispose it or let tidy do it), or null. */
  get grad(): Tensor | null { return wrapOrNull(native.grad(this.id)); }
  /** Drops the accumulated gradient (PyTorch's zero_grad(set_to_none=True)). */
  clearGrad(): void { native.clearGrad(this.id); }
  /** Accumulates d(this)/d(leaf) into leaves' .grad; a non-scalar output needs `gradient`. */
  backward(gradient?: Tensor, retainGraph = false): void {
    native.backward([this.id], gradient ? [gradient.id] : null, retainGraph);
  }
  detach(): Tensor { return w(native.call(O.detach(), this.id)); }
  detach_(): this { native.call(O.detach_(), this.id); return this; }
  /** Keeps .grad on this non-leaf tensor after backward. */
  retainGrad(): this { native.call(O.retainGrad(), this.id); return this; }

  // ---- conversion ----
  /**
   * Converts to another device and/or dtype (null keeps the device). Always returns a new handle,
   * to be disposed on its own: when nothing changes it shares this tensor (no copy, same autograd
   * identity, as PyTorch returns self) unless `copy` is set.
   */
  to(device: Device | null, dtype?: DType, opts: { nonBlocking?: boolean; copy?: boolean } = {}): Tensor {
    const nb = opts.nonBlocking ?? false;
    const copy = opts.copy ?? false;
    if (dtype !== undefined && dtypeCode[dtype] === undefined) throw new TorchError(`unknown dtype '${dtype}'`, 'to');
    if (device !== null && device !== this.device) {
      resolveDevice(device, 'to');
      return w(native.call(O.toDevice(), this.id, device, dtypeCode[dtype ?? this.dtype], nb, copy));
    }
    if (dtype !== undefined && dtype !== this.dtype) return w(native.call(O.toDtype(), this.id, dtypeCode[dtype], nb, copy));
    return copy ? this.clone() : this.alias();
  }
  /** A second handle to this very tensor (see to()). */
  alias(): Tensor { return new Tensor(native.dup(this.id)); }
  cpu(): Tensor { return this.to('cpu'); }
  cuda(index = 0): Tensor { return this.to(`cuda:${index}`); }
  float(): Tensor { return this.to(null, 'float32'); }
  half(): Tensor { return this.to(null, 'float16'); }
  double(): Tensor { return this.to(null, 'float64'); }
  long(): Tensor { return this.to(null, 'int64'); }
  int(): Tensor { return this.to(null, 'int32'); }
  bool(): Tensor { return this.to(null, 'bool'); }
  /**
   * A copy in page-locked host memory, so that .to('cuda', dtype, {nonBlocking: true}) overlaps
   * with compute. Pinned memory is a CUDA facility: without CUDA this throws (as PyTorch does)
   * rather than silently returning pageable memory.
   */
  pinMemory(): Tensor {
    if (cudaDeviceCount() === 0) throw new TorchError('pinned memory needs CUDA, and cuda.isAvailable() is false here; skip pinMemory() on CPU-only machines', 'pin_memory');
    return w(native.call(O.pinMemory(), this.id));
  }
  get isPinned(): boolean { return native.call(O.isPinned(), this.id); }
  clone(): Tensor { return w(native.call(O.clone(), this.id)); }
  contiguous(): Tensor { return w(native.call(O.contiguous(), this.id)); }

  // ---- arithmetic (Tensor or scalar operands) ----
  add(o: TensorLike, alpha = 1): Tensor { return typeof o === 'object' ? w(native.call(O.add(), this.id, o.id, alpha)) : w(native.call(O.addS(), this.id, o, alpha)); }
  sub(o: TensorLike, alpha = 1): Tensor { return typeof o === 'object' ? w(native.call(O.sub(), this.id, o.id, alpha)) : w(native.call(O.subS(), this.id, o, alpha)); }
  /** o - this */
  rsub(o: Scalar): Tensor { return w(native.call(O.rsubS(), this.id, o)); }
  mul(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.mul(), this.id, o.id)) : w(native.call(O.mulS(), this.id, o)); }
  div(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.div(), this.id, o.id)) : w(native.call(O.divS(), this.id, o)); }
  pow(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.pow(), this.id, o.id)) : w(native.call(O.powS(), this.id, o)); }
  /** Python's % (sign of the divisor). */
  remainder(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.remainder(), this.id, o.id)) : w(native.call(O.remainderS(), this.id, o)); }
  /** C's fmod (sign of the dividend). */
  fmod(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.fmod(), this.id, o.id)) : w(native.call(O.fmodS(), this.id, o)); }
  atan2(o: Tensor): Tensor { return w(native.call(O.atan2(), this.id, o.id)); }
  /** this + weight * (end - this) */
  lerp(end: Tensor, weight: TensorLike): Tensor { return typeof weight === 'object' ? w(native.call(O.lerpT(), this.id, end.id, weight.id)) : w(native.call(O.lerp(), this.id, end.id, weight)); }
  /** this + value * a * b (broadcasting) */
  addcmul(a: Tensor, b: Tensor, value = 1): Tensor { return w(native.call(O.addcmul(), this.id, a.id, b.id, value)); }
  /** this + value * a / b (broadcasting) */
  addcdiv(a: Tensor, b: Tensor, value = 1): Tensor { return w(native.call(O.addcdiv(), this.id, a.id, b.id, value)); }
  neg(): Tensor { return w(native.call(O.neg(), this.id)); }
  abs(): Tensor { return w(native.call(O.abs(), this.id)); }
  exp(): Tensor { return w(native.call(O.exp(), this.id)); }
  log(): Tensor { return w(native.call(O.log(), this.id)); }
  log1p(): Tensor { return w(native.call(O.log1p(), this.id)); }
  sqrt(): Tensor { return w(native.call(O.sqrt(), this.id)); }
  rsqrt(): Tensor { return w(native.call(O.rsqrt(), this.id)); }
  square(): Tensor { return w(native.call(O.square(), this.id)); }
  sin(): Tensor { return w(native.call(O.sin(), this.id)); }
  cos(): Tensor { return w(native.call(O.cos(), this.id)); }
  sigmoid(): Tensor { return w(native.call(O.sigmoid(), this.id)); }
  tanh(): Tensor { return w(native.call(O.tanh(), this.id)); }
  relu(): Tensor { return w(native.call(O.relu(), this.id)); }
  floor(): Tensor { return w(native.call(O.floor(), this.id)); }
  ceil(): Tensor { return w(native.call(O.ceil(), this.id)); }
  round(): Tensor { return w(native.call(O.round(), this.id)); }
  trunc(): Tensor { return w(native.call(O.trunc(), this.id)); }
  sign(): Tensor { return w(native.call(O.sign(), this.id)); }
  reciprocal(): Tensor { return w(native.call(O.reciprocal(), this.id)); }
  softmax(dim: number): Tensor { return w(native.call(O.softmax(), this.id, dim)); }
  logSoftmax(dim: number): Tensor { return w(native.call(O.logSoftmax(), this.id, dim)); }
  clamp(min: number | null, max: number | null = null): Tensor { return w(native.call(O.clamp(), this.id, min, max)); }
  clampMin(min: number): Tensor { return w(native.call(O.clampMin(), this.id, min)); }
  clampMax(max: number): Tensor { return w(native.call(O.clampMax(), this.id, max)); }
  maximum(o: Tensor): Tensor { return w(native.call(O.maximum(), this.id, o.id)); }
  minimum(o: Tensor): Tensor { return w(native.call(O.minimum(), this.id, o.id)); }
  isnan(): Tensor { return w(native.call(O.isnan(), this.id)); }
  isfinite(): Tensor { return w(native.call(O.isfinite(), this.id)); }

  // ---- in place (on leaf tensors that require grad only under noGrad, as in PyTorch) ----
  add_(o: TensorLike, alpha = 1): this { if (typeof o === 'object') native.call(O.add_(), this.id, o.id, alpha); else native.call(O.addS_(), this.id, o, alpha); return this; }
  sub_(o: TensorLike, alpha = 1): this { if (typeof o === 'object') native.call(O.sub_(), this.id, o.id, alpha); else native.call(O.subS_(), this.id, o, alpha); return this; }
  mul_(o: TensorLike): this { if (typeof o === 'object') native.call(O.mul_(), this.id, o.id); else native.call(O.mulS_(), this.id, o); return this; }
  div_(o: TensorLike): this { if (typeof o === 'object') native.call(O.div_(), this.id, o.id); else native.call(O.divS_(), this.id, o); return this; }
  copy_(src: Tensor, nonBlocking = false): this { native.call(O.copy_(), this.id, src.id, nonBlocking); return this; }
  zero_(): this { native.call(O.zero_(), this.id); return this; }
  fill_(v: Scalar): this { native.call(O.fill_(), this.id, v); return this; }
  clamp_(min: number | null, max: number | null = null): this { native.call(O.clamp_(), this.id, min, max); return this; }
  clampMin_(v: number): this { native.call(O.clampMin_(), this.id, v); return this; }
  clampMax_(v: number): this { native.call(O.clampMax_(), this.id, v); return this; }
  relu_(): this { native.call(O.relu_(), this.id); return this; }
  sqrt_(): this { native.call(O.sqrt_(), this.id); return this; }
  /** this += weight * (end - this) */
  lerp_(end: Tensor, weight: TensorLike): this { if (typeof weight === 'object') native.call(O.lerpT_(), this.id, end.id, weight.id); else native.call(O.lerp_(), this.id, end.id, weight); return this; }
  /** this += value * a * b */
  addcmul_(a: Tensor, b: Tensor, value = 1): this { native.call(O.addcmul_(), this.id, a.id, b.id, value); return this; }
  /** this += value * a / b */
  addcdiv_(a: Tensor, b: Tensor, value = 1): this { native.call(O.addcdiv_(), this.id, a.id, b.id, value); return this; }
  maskedFill_(mask: Tensor, value: Scalar): this { native.call(O.maskedFill_(), this.id, mask.id, value); return this; }
  /** this[indices] = values (or += with accumulate); null indices mean ':'. */
  indexPut_(indices: (Tensor | null)[], values: Tensor, accumulate = false): this {
    native.call(O.indexPut_(), this.id, indices.map((t) => (t ? t.id : null)), values.id, accumulate);
    return this;
  }
  /** this[..., index[i], ...] = src[..., i, ...] along dim */
  indexCopy_(dim: number, index: Tensor, src: Tensor): this { native.call(O.indexCopy_(), this.id, dim, index.id, src.id); return this; }
  /** this[..., index[i], ...] += alpha * src[..., i, ...] along dim (duplicates accumulate) */
  indexAdd_(dim: number, index: Tensor, src: Tensor, alpha = 1): this { native.call(O.indexAdd_(), this.id, dim, index.id, src.id, alpha); return this; }
  uniform_(from = 0, to = 1, generator?: Generator): this { native.call(O.uniform_(), this.id, from, to, generator?.id); return this; }
  normal_(mean = 0, std = 1, generator?: Generator): this { native.call(O.normal_(), this.id, mean, std, generator?.id); return this; }
  /** Fills with 1 (probability p) or 0. */
  bernoulli_(p = 0.5, generator?: Generator): this { native.call(O.bernoulli_(), this.id, p, generator?.id); return this; }

  // ---- comparisons and selection ----
  eq(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.eq(), this.id, o.id)) : w(native.call(O.eqS(), this.id, o)); }
  ne(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.ne(), this.id, o.id)) : w(native.call(O.neS(), this.id, o)); }
  lt(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.lt(), this.id, o.id)) : w(native.call(O.ltS(), this.id, o)); }
  le(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.le(), this.id, o.id)) : w(native.call(O.leS(), this.id, o)); }
  gt(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.gt(), this.id, o.id)) : w(native.call(O.gtS(), this.id, o)); }
  ge(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.ge(), this.id, o.id)) : w(native.call(O.geS(), this.id, o)); }
  logicalAnd(o: Tensor): Tensor { return w(native.call(O.logicalAnd(), this.id, o.id)); }
  logicalOr(o: Tensor): Tensor { return w(native.call(O.logicalOr(), this.id, o.id)); }
  logicalXor(o: Tensor): Tensor { return w(native.call(O.logicalXor(), this.id, o.id)); }
  logicalNot(): Tensor { return w(native.call(O.logicalNot(), this.id)); }
  maskedFill(mask: Tensor, value: Scalar): Tensor { return w(native.call(O.maskedFill(), this.id, mask.id, value)); }
  /** Same shape and values (a host sync on CUDA). */
  equal(o: Tensor): boolean { return native.call(O.equal(), this.id, o.id); }
  allclose(o: Tensor, rtol = 1e-5, atol = 1e-8): boolean { return native.call(O.allclose(), this.id, o.id, rtol, atol, false); }

  // ---- reductions ----
  sum(dim?: number | number[], keepdim = false): Tensor { return dim === undefined ? w(native.call(O.sum(), this.id)) : w(native.call(O.sumDim(), this.id, dim, keepdim)); }
  mean(dim?: number | number[], keepdim = false): Tensor { return dim === undefined ? w(native.call(O.mean(), this.id)) : w(native.call(O.meanDim(), this.id, dim, keepdim)); }
  max(): Tensor { return w(native.call(O.maxAll(), this.id)); }
  min(): Tensor { return w(native.call(O.minAll(), this.id)); }
  /** [values, indices] along dim. */
  maxDim(dim: number, keepdim = false): [Tensor, Tensor] { return ws(native.call(O.maxDim(), this.id, dim, keepdim)) as [Tensor, Tensor]; }
  minDim(dim: number, keepdim = false): [Tensor, Tensor] { return ws(native.call(O.minDim(), this.id, dim, keepdim)) as [Tensor, Tensor]; }
  /** Maximum over dims (all when omitted), values only. */
  amax(dim: number | number[] = [], keepdim = false): Tensor { return w(native.call(O.amax(), this.id, dim, keepdim)); }
  amin(dim: number | number[] = [], keepdim = false): Tensor { return w(native.call(O.amin(), this.id, dim, keepdim)); }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return w(native.call(O.logsumexp(), this.id, dim, keepdim)); }
  argmax(dim?: number, keepdim = false): Tensor { return w(native.call(O.argmax(), this.id, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return w(native.call(O.argmin(), this.id, dim ?? null, keepdim)); }
  prod(): Tensor { return w(native.call(O.prod(), this.id)); }
  /** Vector p-norm over dims (all when omitted). */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor { return w(native.call(O.norm(), this.id, p, dim ?? null, keepdim)); }
  /** Standard deviation; correction 1 is the unbiased estimator (PyTorch's default), 0 the population one. */
  std(dim?: number | number[], keepdim = false, correction = 1): Tensor { return w(native.call(O.std(), this.id, dim ?? null, correction, keepdim)); }
  var(dim?: number | number[], keepdim = false, correction = 1): Tensor { return w(native.call(O.var(), this.id, dim ?? null, correction, keepdim)); }
  all(dim?: number, keepdim = false): Tensor { return dim === undefined ? w(native.call(O.all(), this.id)) : w(native.call(O.allDim(), this.id, dim, keepdim)); }
  any(dim?: number, keepdim = false): Tensor { return dim === undefined ? w(native.call(O.any(), this.id)) : w(native.call(O.anyDim(), this.id, dim, keepdim)); }
  cumsum(dim: number): Tensor { return w(native.call(O.cumsum(), this.id, dim)); }
  /** [values, indices]. */
  sort(dim = -1, descending = false): [Tensor, Tensor] { return ws(native.call(O.sort(), this.id, dim, descending)) as [Tensor, Tensor]; }
  argsort(dim = -1, descending = false): Tensor { return w(native.call(O.argsort(), this.id, dim, descending)); }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] { return ws(native.call(O.topk(), this.id, k, dim, largest, sorted)) as [Tensor, Tensor]; }
  /** [count, ndim] int64 indices of the non-zero elements (a host sync on CUDA). */
  nonzero(): Tensor { return w(native.call(O.nonzero(), this.id)); }

  // ---- linear algebra ----
  matmul(o: Tensor): Tensor { return w(native.call(O.matmul(), this.id, o.id)); }
  mm(o: Tensor): Tensor { return w(native.call(O.mm(), this.id, o.id)); }
  bmm(o: Tensor): Tensor { return w(native.call(O.bmm(), this.id, o.id)); }

  // ---- shape ----
  reshape(...shape: Sizes): Tensor { return w(native.call(O.reshape(), this.id, sizes(shape))); }
  view(...shape: Sizes): Tensor { return w(native.call(O.view(), this.id, sizes(shape))); }
  permute(...dims: Sizes): Tensor { return w(native.call(O.permute(), this.id, sizes(dims))); }
  transpose(a: number, b: number): Tensor { return w(native.call(O.transpose(), this.id, a, b)); }
  get T(): Tensor { return this.transpose(0, 1); }
  flatten(start = 0, end = -1): Tensor { return w(native.call(O.flatten(), this.id, start, end)); }
  unsqueeze(dim: number): Tensor { return w(native.call(O.unsqueeze(), this.id, dim)); }
  squeeze(dim?: number): Tensor { return dim === undefined ? w(native.call(O.squeezeAll(), this.id)) : w(native.call(O.squeeze(), this.id, dim)); }
  narrow(dim: number, start: number, length: number): Tensor { return w(native.call(O.narrow(), this.id, dim, start, length)); }
  /** this[..., start:end:step, ...] along dim (null for an open end). */
  slice(dim: number, start: number | null, end: number | null, step = 1): Tensor { return w(native.call(O.slice(), this.id, dim, start, end, step)); }
  select(dim: number, index: number): Tensor { return w(native.call(O.select(), this.id, dim, index)); }
  indexSelect(dim: number, index: Tensor): Tensor { return w(native.call(O.indexSelect(), this.id, dim, index.id)); }
  gather(dim: number, index: Tensor): Tensor { return w(native.call(O.gather(), this.id, dim, index.id, false)); }
  /** Copy of this with src's values written at index along dim (out-of-place scatter). */
  scatter(dim: number, index: Tensor, src: TensorLike): Tensor {
    return typeof src === 'object' ? w(native.call(O.scatter(), this.id, dim, index.id, src.id)) : w(native.call(O.scatterS(), this.id, dim, index.id, src));
  }
  /** Out-of-place indexCopy_. */
  indexCopy(dim: number, index: Tensor, src: Tensor): Tensor { return w(native.call(O.indexCopy(), this.id, dim, index.id, src.id)); }
  /** Out-of-place indexAdd_. */
  indexAdd(dim: number, index: Tensor, src: Tensor, alpha = 1): Tensor { return w(native.call(O.indexAdd(), this.id, dim, index.id, src.id, alpha)); }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor { return w(native.call(O.scatterAdd(), this.id, dim, index.id, src.id)); }
  /** Advanced indexing: t[i0, i1, ...] with integer or bool index tensors, null for ':'. */
  index(indices: (Tensor | null)[]): Tensor { return w(native.call(O.index(), this.id, indices.map((t) => (t ? t.id : null)))); }
  flip(...dims: Sizes): Tensor { return w(native.call(O.flip(), this.id, sizes(dims))); }
  roll(shifts: number | number[], dims: number | number[] = []): Tensor { return w(native.call(O.roll(), this.id, shifts, dims)); }
  /** A broadcast view; -1 keeps a size. */
  expand(...shape: Sizes): Tensor { return w(native.call(O.expand(), this.id, sizes(shape), false)); }
  expandAs(o: Tensor): Tensor { return w(native.call(O.expandAs(), this.id, o.id)); }
  repeat(...times: Sizes): Tensor { return w(native.call(O.repeat(), this.id, sizes(times))); }
  /** Pieces of `size` along dim (the last may be smaller), or of the given sizes. */
  split(size: number | number[], dim = 0): Tensor[] {
    return typeof size === 'number' ? ws(native.call(O.split(), this.id, size, dim)) : ws(native.call(O.splitSizes(), this.id, size, dim));
  }
  chunk(chunks: number, dim = 0): Tensor[] { return ws(native.call(O.chunk(), this.id, chunks, dim)); }
  unbind(dim = 0): Tensor[] { return ws(native.call(O.unbind(), this.id, dim)); }

  // ---- debugging ----
  toString(): string {
    if (this.id < 0) return 'Tensor(disposed)';
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype}, device=${this.device})`;
  }
  [inspect.custom](): string { return this.toString(); }
}

/**
 * A random-number generator for the ops that take one: mt19937 on CPU (the same stream as
 * Python's torch.Generator().manual_seed(seed)), Philox on CUDA.
 */
export class Generator {
  readonly id: number;
  readonly device: Device;
  constructor(seed: number, device: Device = 'cpu') {
    this.device = resolveDevice(device, 'Generator');
    this.id = native.newGenerator(seed, device);
  }
  /** The generator that manualSeed() seeds and that ops use when given none. */
  static default(device: Device = 'cpu'): Generator {
    const g = Object.create(Generator.prototype) as { id: number; device: Device };
    g.device = resolveDevice(device, 'Generator.default');
    g.id = native.defaultGenerator(device);
    return g as Generator;
  }
  manualSeed(seed: number): this { native.generatorSeed(this.id, seed); return this; }
  initialSeed(): number { return native.generatorSeed(this.id); }
  /** The complete state as a uint8 CPU tensor (for checkpoints); setState() restores it exactly. */
  getState(): Tensor { return w(native.generatorState(this.id)); }
  setState(state: Tensor): void { native.setGeneratorState(this.id, state.id); }
}

export function w(id: number): Tensor { return new Tensor(id); }
export function wrapOrNull(id: number | null): Tensor | null { return id === null ? null : new Tensor(id); }
export function ws(ids: number[]): Tensor[] { return ids.map((id) => new Tensor(id)); }
const tensorIds = (ts: Tensor[]): number[] => ts.map((t) => t.id);

export function cat(ts: Tensor[], dim = 0): Tensor { return w(native.call(O.cat(), tensorIds(ts), dim)); }
export function stack(ts: Tensor[], dim = 0): Tensor { return w(native.call(O.stack(), tensorIds(ts), dim)); }
/** Elementwise cond ? a : b; either branch may be a scalar. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (typeof a === 'object') return typeof b === 'object' ? w(native.call(O.where(), cond.id, a.id, b.id)) : w(native.call(O.whereTS(), cond.id, a.id, b));
  return typeof b === 'object' ? w(native.call(O.whereST(), cond.id, a, b.id)) : w(native.call(O.whereSS(), cond.id, a, b));
}

export { dtypeOfArray, arrayFor };
