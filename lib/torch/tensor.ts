// Tensor: a handle into the addon's tensor table, with the operations the rest of soco-train uses.
// Every op is one boxed LibTorch dispatcher call, so autograd, autocast and CUDA behave as in Python.
import { native } from './native';
import { track, Disposable } from './scope';
import { DType, Device, TypedArray, arrayFor, dtypeCode, dtypeFromCode, dtypeOfArray, checkDevice } from './dtype';

/** An error raised by LibTorch or by argument checking, naming the operator. */
export class TorchError extends Error {
  override name = 'TorchError';
  constructor(message: string, readonly op: string) {
    super(`${op}: ${message}`);
  }
}
native.setErrorClass(TorchError);

const registry = new FinalizationRegistry<number>((id) => native.free(id));

/** Resolves an operator once; torchvision's ops resolve on first use (after their library loads). */
export function op(name: string, overload = ''): () => number {
  let index = -1;
  return () => (index >= 0 ? index : (index = native.op(name, overload)));
}

const O = {
  add: op('aten::add', 'Tensor'), addS: op('aten::add', 'Scalar'),
  sub: op('aten::sub', 'Tensor'), subS: op('aten::sub', 'Scalar'), rsubS: op('aten::rsub', 'Scalar'),
  mul: op('aten::mul', 'Tensor'), mulS: op('aten::mul', 'Scalar'),
  div: op('aten::div', 'Tensor'), divS: op('aten::div', 'Scalar'),
  pow: op('aten::pow', 'Tensor_Tensor'), powS: op('aten::pow', 'Tensor_Scalar'),
  add_: op('aten::add_', 'Tensor'), addS_: op('aten::add_', 'Scalar'),
  sub_: op('aten::sub_', 'Tensor'), mul_: op('aten::mul_', 'Tensor'), mulS_: op('aten::mul_', 'Scalar'),
  div_: op('aten::div_', 'Tensor'), divS_: op('aten::div_', 'Scalar'),
  copy_: op('aten::copy_'), zero_: op('aten::zero_'), fill_: op('aten::fill_', 'Scalar'),
  clampMin_: op('aten::clamp_min_'), uniform_: op('aten::uniform_'), normal_: op('aten::normal_'),
  lerp_: op('aten::lerp_', 'Scalar'), addcmul_: op('aten::addcmul_'),
  neg: op('aten::neg'), abs: op('aten::abs'), exp: op('aten::exp'), log: op('aten::log'),
  sqrt: op('aten::sqrt'), rsqrt: op('aten::rsqrt'), sin: op('aten::sin'), cos: op('aten::cos'),
  sigmoid: op('aten::sigmoid'), tanh: op('aten::tanh'), relu: op('aten::relu'), relu_: op('aten::relu_'),
  floor: op('aten::floor'), ceil: op('aten::ceil'), round: op('aten::round'), sign: op('aten::sign'),
  reciprocal: op('aten::reciprocal'),
  clamp: op('aten::clamp'), clampMin: op('aten::clamp_min'), clampMax: op('aten::clamp_max'),
  maximum: op('aten::maximum'), minimum: op('aten::minimum'),
  eq: op('aten::eq', 'Tensor'), eqS: op('aten::eq', 'Scalar'), ne: op('aten::ne', 'Tensor'), neS: op('aten::ne', 'Scalar'),
  lt: op('aten::lt', 'Tensor'), ltS: op('aten::lt', 'Scalar'), le: op('aten::le', 'Tensor'), leS: op('aten::le', 'Scalar'),
  gt: op('aten::gt', 'Tensor'), gtS: op('aten::gt', 'Scalar'), ge: op('aten::ge', 'Tensor'), geS: op('aten::ge', 'Scalar'),
  logicalAnd: op('aten::logical_and'), logicalOr: op('aten::logical_or'), logicalNot: op('aten::logical_not'),
  where: op('aten::where', 'self'), maskedFill: op('aten::masked_fill', 'Scalar'),
  sum: op('aten::sum'), sumDim: op('aten::sum', 'dim_IntList'), mean: op('aten::mean'), meanDim: op('aten::mean', 'dim'),
  maxAll: op('aten::max'), minAll: op('aten::min'), maxDim: op('aten::max', 'dim'), minDim: op('aten::min', 'dim'),
  argmax: op('aten::argmax'), argmin: op('aten::argmin'), prod: op('aten::prod'),
  norm: op('aten::linalg_vector_norm'), std: op('aten::std', 'correction'), var: op('aten::var', 'correction'),
  all: op('aten::all'), any: op('aten::any'), cumsum: op('aten::cumsum'),
  sort: op('aten::sort'), argsort: op('aten::argsort'), topk: op('aten::topk'), nonzero: op('aten::nonzero'),
  matmul: op('aten::matmul'), mm: op('aten::mm'), bmm: op('aten::bmm'),
  reshape: op('aten::reshape'), view: op('aten::view'), permute: op('aten::permute'),
  transpose: op('aten::transpose', 'int'), contiguous: op('aten::contiguous'), flatten: op('aten::flatten', 'using_ints'),
  unsqueeze: op('aten::unsqueeze'), squeeze: op('aten::squeeze', 'dim'), squeezeAll: op('aten::squeeze'),
  narrow: op('aten::narrow'), slice: op('aten::slice', 'Tensor'), select: op('aten::select', 'int'),
  indexSelect: op('aten::index_select'), gather: op('aten::gather'), index: op('aten::index', 'Tensor'),
  flip: op('aten::flip'), expand: op('aten::expand'), repeat: op('aten::repeat'),
  cat: op('aten::cat'), stack: op('aten::stack'), split: op('aten::split', 'Tensor'), chunk: op('aten::chunk'),
  clone: op('aten::clone'), detach: op('aten::detach'), toDtype: op('aten::to', 'dtype'),
  toDevice: op('aten::to', 'device'), pinMemory: op('aten::pin_memory'), isPinned: op('aten::is_pinned'),
};

export type Scalar = number | boolean;
export type TensorLike = Tensor | Scalar;

interface Meta { dtype: DType; device: Device; shape: number[] }

export class Tensor implements Disposable {
  /** Handle in the addon's tensor table; -1 once disposed. */
  id: number;
  private meta_: Meta | undefined;

  constructor(id: number) {
    this.id = id;
    registry.register(this, id, this);
    track(this);
  }

  // ---- lifetime ----
  get isDisposed(): boolean { return this.id < 0; }

  dispose(): void {
    if (this.id < 0) return;
    registry.unregister(this);
    native.free(this.id);
    this.id = -1;
  }

  private m(): Meta {
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
    return s[dim < 0 ? dim + s.length : dim];
  }
  get requiresGrad(): boolean { return native.meta(this.id)[2]; }

  // ---- data out ----
  /** A copy of the data: Float32Array for float32, BigInt64Array for int64, raw bits for half types. */
  toTypedArray(): TypedArray { return native.toBuffer(this.id); }
  /** A copy of the data as plain numbers, flattened. */
  toArray(): number[] {
    const a = this.toTypedArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a as ArrayLike<number>);
  }
  item(): number { return native.item(this.id); }

  // ---- autograd ----
  requiresGrad_(flag = true): this { native.setRequiresGrad(this.id, flag); return this; }
  get grad(): Tensor | null { return wrapOrNull(native.grad(this.id)); }
  /** Drops the accumulated gradient (PyTorch's zero_grad(set_to_none=True)). */
  clearGrad(): void { native.clearGrad(this.id); }
  backward(gradient?: Tensor, retainGraph = false): void {
    native.backward([this.id], gradient ? [gradient.id] : null, retainGraph);
  }
  detach(): Tensor { return w(native.call(O.detach(), this.id)); }

  // ---- conversion ----
  to(device: Device | null, dtype?: DType, opts: { nonBlocking?: boolean; copy?: boolean } = {}): Tensor {
    let t: Tensor = this;
    if (device !== null && device !== this.device) t = w(native.call(O.toDevice(), t.id, checkDevice(device), dtypeCode[dtype ?? this.dtype], opts.nonBlocking ?? false, opts.copy ?? false));
    else if (dtype !== undefined && dtype !== this.dtype) t = w(native.call(O.toDtype(), t.id, dtypeCode[dtype], opts.nonBlocking ?? false, opts.copy ?? false));
    return t === this ? (opts.copy ? this.clone() : this) : t;
  }
  float(): Tensor { return this.to(null, 'float32'); }
  pinMemory(): Tensor { return w(native.call(O.pinMemory(), this.id)); }
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
  neg(): Tensor { return w(native.call(O.neg(), this.id)); }
  abs(): Tensor { return w(native.call(O.abs(), this.id)); }
  exp(): Tensor { return w(native.call(O.exp(), this.id)); }
  log(): Tensor { return w(native.call(O.log(), this.id)); }
  sqrt(): Tensor { return w(native.call(O.sqrt(), this.id)); }
  rsqrt(): Tensor { return w(native.call(O.rsqrt(), this.id)); }
  sin(): Tensor { return w(native.call(O.sin(), this.id)); }
  cos(): Tensor { return w(native.call(O.cos(), this.id)); }
  sigmoid(): Tensor { return w(native.call(O.sigmoid(), this.id)); }
  tanh(): Tensor { return w(native.call(O.tanh(), this.id)); }
  relu(): Tensor { return w(native.call(O.relu(), this.id)); }
  floor(): Tensor { return w(native.call(O.floor(), this.id)); }
  ceil(): Tensor { return w(native.call(O.ceil(), this.id)); }
  round(): Tensor { return w(native.call(O.round(), this.id)); }
  sign(): Tensor { return w(native.call(O.sign(), this.id)); }
  reciprocal(): Tensor { return w(native.call(O.reciprocal(), this.id)); }
  clamp(min: number | null, max: number | null = null): Tensor { return w(native.call(O.clamp(), this.id, min, max)); }
  clampMin(min: number): Tensor { return w(native.call(O.clampMin(), this.id, min)); }
  clampMax(max: number): Tensor { return w(native.call(O.clampMax(), this.id, max)); }
  maximum(o: Tensor): Tensor { return w(native.call(O.maximum(), this.id, o.id)); }
  minimum(o: Tensor): Tensor { return w(native.call(O.minimum(), this.id, o.id)); }

  // ---- in place (on leaf tensors only under noGrad, as in PyTorch) ----
  add_(o: TensorLike, alpha = 1): this { if (typeof o === 'object') native.call(O.add_(), this.id, o.id, alpha); else native.call(O.addS_(), this.id, o, alpha); return this; }
  sub_(o: Tensor, alpha = 1): this { native.call(O.sub_(), this.id, o.id, alpha); return this; }
  mul_(o: TensorLike): this { if (typeof o === 'object') native.call(O.mul_(), this.id, o.id); else native.call(O.mulS_(), this.id, o); return this; }
  div_(o: TensorLike): this { if (typeof o === 'object') native.call(O.div_(), this.id, o.id); else native.call(O.divS_(), this.id, o); return this; }
  copy_(src: Tensor, nonBlocking = false): this { native.call(O.copy_(), this.id, src.id, nonBlocking); return this; }
  zero_(): this { native.call(O.zero_(), this.id); return this; }
  fill_(v: Scalar): this { native.call(O.fill_(), this.id, v); return this; }
  clampMin_(v: number): this { native.call(O.clampMin_(), this.id, v); return this; }
  relu_(): this { native.call(O.relu_(), this.id); return this; }
  /** this += weight * (end - this) */
  lerp_(end: Tensor, weight: number): this { native.call(O.lerp_(), this.id, end.id, weight); return this; }
  addcmul_(a: Tensor, b: Tensor, value = 1): this { native.call(O.addcmul_(), this.id, a.id, b.id, value); return this; }
  uniform_(from = 0, to = 1, generator?: Generator): this { native.call(O.uniform_(), this.id, from, to, generator?.id); return this; }
  normal_(mean = 0, std = 1, generator?: Generator): this { native.call(O.normal_(), this.id, mean, std, generator?.id); return this; }

  // ---- comparisons and selection ----
  eq(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.eq(), this.id, o.id)) : w(native.call(O.eqS(), this.id, o)); }
  ne(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.ne(), this.id, o.id)) : w(native.call(O.neS(), this.id, o)); }
  lt(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.lt(), this.id, o.id)) : w(native.call(O.ltS(), this.id, o)); }
  le(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.le(), this.id, o.id)) : w(native.call(O.leS(), this.id, o)); }
  gt(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.gt(), this.id, o.id)) : w(native.call(O.gtS(), this.id, o)); }
  ge(o: TensorLike): Tensor { return typeof o === 'object' ? w(native.call(O.ge(), this.id, o.id)) : w(native.call(O.geS(), this.id, o)); }
  logicalAnd(o: Tensor): Tensor { return w(native.call(O.logicalAnd(), this.id, o.id)); }
  logicalOr(o: Tensor): Tensor { return w(native.call(O.logicalOr(), this.id, o.id)); }
  logicalNot(): Tensor { return w(native.call(O.logicalNot(), this.id)); }
  maskedFill(mask: Tensor, value: Scalar): Tensor { return w(native.call(O.maskedFill(), this.id, mask.id, value)); }

  // ---- reductions ----
  sum(dim?: number | number[], keepdim = false): Tensor { return dim === undefined ? w(native.call(O.sum(), this.id)) : w(native.call(O.sumDim(), this.id, dim, keepdim)); }
  mean(dim?: number | number[], keepdim = false): Tensor { return dim === undefined ? w(native.call(O.mean(), this.id)) : w(native.call(O.meanDim(), this.id, dim, keepdim)); }
  max(): Tensor { return w(native.call(O.maxAll(), this.id)); }
  min(): Tensor { return w(native.call(O.minAll(), this.id)); }
  /** [values, indices] along dim. */
  maxDim(dim: number, keepdim = false): [Tensor, Tensor] { return ws(native.call(O.maxDim(), this.id, dim, keepdim)) as [Tensor, Tensor]; }
  minDim(dim: number, keepdim = false): [Tensor, Tensor] { return ws(native.call(O.minDim(), this.id, dim, keepdim)) as [Tensor, Tensor]; }
  argmax(dim?: number, keepdim = false): Tensor { return w(native.call(O.argmax(), this.id, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return w(native.call(O.argmin(), this.id, dim ?? null, keepdim)); }
  prod(): Tensor { return w(native.call(O.prod(), this.id)); }
  /** Vector p-norm over dims (all when omitted). */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor { return w(native.call(O.norm(), this.id, p, dim ?? null, keepdim)); }
  std(dim?: number | number[], keepdim = false, correction = 1): Tensor { return w(native.call(O.std(), this.id, dim ?? null, correction, keepdim)); }
  var(dim?: number | number[], keepdim = false, correction = 1): Tensor { return w(native.call(O.var(), this.id, dim ?? null, correction, keepdim)); }
  all(): Tensor { return w(native.call(O.all(), this.id)); }
  any(): Tensor { return w(native.call(O.any(), this.id)); }
  cumsum(dim: number): Tensor { return w(native.call(O.cumsum(), this.id, dim)); }
  sort(dim = -1, descending = false): [Tensor, Tensor] { return ws(native.call(O.sort(), this.id, dim, descending)) as [Tensor, Tensor]; }
  argsort(dim = -1, descending = false): Tensor { return w(native.call(O.argsort(), this.id, dim, descending)); }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] { return ws(native.call(O.topk(), this.id, k, dim, largest, sorted)) as [Tensor, Tensor]; }
  nonzero(): Tensor { return w(native.call(O.nonzero(), this.id)); }

  // ---- linear algebra ----
  matmul(o: Tensor): Tensor { return w(native.call(O.matmul(), this.id, o.id)); }
  mm(o: Tensor): Tensor { return w(native.call(O.mm(), this.id, o.id)); }
  bmm(o: Tensor): Tensor { return w(native.call(O.bmm(), this.id, o.id)); }

  // ---- shape ----
  reshape(...shape: number[]): Tensor { return w(native.call(O.reshape(), this.id, shape)); }
  view(...shape: number[]): Tensor { return w(native.call(O.view(), this.id, shape)); }
  permute(...dims: number[]): Tensor { return w(native.call(O.permute(), this.id, dims)); }
  transpose(a: number, b: number): Tensor { return w(native.call(O.transpose(), this.id, a, b)); }
  get T(): Tensor { return this.transpose(0, 1); }
  flatten(start = 0, end = -1): Tensor { return w(native.call(O.flatten(), this.id, start, end)); }
  unsqueeze(dim: number): Tensor { return w(native.call(O.unsqueeze(), this.id, dim)); }
  squeeze(dim?: number): Tensor { return dim === undefined ? w(native.call(O.squeezeAll(), this.id)) : w(native.call(O.squeeze(), this.id, dim)); }
  narrow(dim: number, start: number, length: number): Tensor { return w(native.call(O.narrow(), this.id, dim, start, length)); }
  slice(dim: number, start: number | null, end: number | null, step = 1): Tensor { return w(native.call(O.slice(), this.id, dim, start, end, step)); }
  select(dim: number, index: number): Tensor { return w(native.call(O.select(), this.id, dim, index)); }
  indexSelect(dim: number, index: Tensor): Tensor { return w(native.call(O.indexSelect(), this.id, dim, index.id)); }
  gather(dim: number, index: Tensor): Tensor { return w(native.call(O.gather(), this.id, dim, index.id, false)); }
  /** Advanced indexing: t[i0, i1, ...] with null for ':'. */
  index(indices: (Tensor | null)[]): Tensor { return w(native.call(O.index(), this.id, indices.map((t) => (t ? t.id : null)))); }
  flip(...dims: number[]): Tensor { return w(native.call(O.flip(), this.id, dims)); }
  expand(...shape: number[]): Tensor { return w(native.call(O.expand(), this.id, shape, false)); }
  repeat(...times: number[]): Tensor { return w(native.call(O.repeat(), this.id, times)); }
  split(size: number, dim = 0): Tensor[] { return ws(native.call(O.split(), this.id, size, dim)); }
  chunk(chunks: number, dim = 0): Tensor[] { return ws(native.call(O.chunk(), this.id, chunks, dim)); }
}

/** A seeded random-number generator for the ops that take one (CPU). */
export class Generator {
  readonly id: number;
  constructor(seed: number) { this.id = native.newGenerator(seed); }
}

export function w(id: number): Tensor { return new Tensor(id); }
export function wrapOrNull(id: number | null): Tensor | null { return id === null ? null : new Tensor(id); }
export function ws(ids: number[]): Tensor[] { return ids.map((id) => new Tensor(id)); }

export function cat(ts: Tensor[], dim = 0): Tensor { return w(native.call(O.cat(), ts.map((t) => t.id), dim)); }
export function stack(ts: Tensor[], dim = 0): Tensor { return w(native.call(O.stack(), ts.map((t) => t.id), dim)); }
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor { return w(native.call(O.where(), cond.id, a.id, b.id)); }

export { dtypeOfArray, arrayFor };
