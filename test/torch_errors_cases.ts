// The misuse battery of test/torch_errors.test.ts: each case must throw a JS Error (a TorchError
// naming the op where LibTorch or our argument checks reject it). It runs in a child process
// (test/torch_errors_child.ts) so that a crash shows up as a dead child, not a dead test runner.
import * as fs from 'fs';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { native } from '../lib/torch/native';

export interface ErrorCase {
  name: string;
  fn: () => unknown;
  /** Expected class name; TorchError unless said otherwise. */
  cls?: string;
  /** Expected TorchError.op (string: exact; RegExp: match). */
  op?: string | RegExp;
  /** Expected message content. */
  msg?: RegExp;
}

const f32 = (shape: number[]): Tensor => torch.ones(shape);
const freeBytes = (): number => Number(/MemAvailable:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1]) * 1024;
function disposed(): Tensor {
  const t = torch.ones([2]);
  t.dispose();
  return t;
}

export const errorCases: ErrorCase[] = [
  // ---- wrong shapes ----
  { name: 'matmul of mismatched shapes', fn: () => f32([2, 3]).matmul(f32([4, 5])), op: 'aten::matmul', msg: /2x3 and 4x5/ },
  { name: 'add of non-broadcastable shapes', fn: () => f32([2, 3]).add(f32([4])), op: 'aten::add.Tensor', msg: /size of tensor a \(3\) must match the size of tensor b \(4\)/ },
  { name: 'conv2d with wrong input channels', fn: () => torch.conv2d(f32([1, 3, 8, 8]), f32([4, 2, 3, 3])), op: 'aten::conv2d', msg: /channels/ },
  { name: 'conv2d of a 2-d input', fn: () => torch.conv2d(f32([8, 8]), f32([4, 1, 3, 3])), op: 'aten::conv2d' },
  { name: 'reshape to a different element count', fn: () => f32([2, 3]).reshape(5), op: 'aten::reshape', msg: /shape '\[5\]' is invalid for input of size 6/ },
  { name: 'view of a non-contiguous tensor', fn: () => f32([2, 3]).T.view(6), op: 'aten::view' },
  { name: 'cat of mismatched shapes', fn: () => torch.cat([f32([2, 3]), f32([2, 4])]), op: 'aten::cat', msg: /Sizes of tensors must match/ },
  { name: 'linear with wrong in_features', fn: () => torch.linear(f32([2, 3]), f32([4, 5])), op: 'aten::linear' },
  { name: 'batchNorm with wrong running stats size', fn: () => torch.batchNorm(f32([2, 3, 4, 4]), f32([4]), f32([4]), null, null, false), op: 'aten::batch_norm' },
  { name: 'bmm of 2-d tensors', fn: () => f32([2, 3]).bmm(f32([3, 2])), op: 'aten::bmm', msg: /batch1 must be a 3D tensor/ },
  { name: 'roiAlign with [K, 4] boxes', fn: () => torch.roiAlign(f32([1, 2, 8, 8]), f32([3, 4]), 2), op: 'torchvision::roi_align' },
  { name: 'indexSelect out of range', fn: () => f32([3, 2]).indexSelect(0, torch.tensor([5], { dtype: 'int64' })), op: 'aten::index_select', msg: /out of range/ },
  { name: 'gather out of range', fn: () => f32([3, 2]).gather(1, torch.tensor([[0, 7]], { dtype: 'int64' })), op: 'aten::gather', msg: /out of bounds/ },
  { name: 'select out of range', fn: () => f32([3, 2]).select(0, 10), op: 'aten::select.int', msg: /out of range/ },
  { name: 'size() of a missing dim', fn: () => f32([3, 2]).size(2), op: 'size', msg: /dim 2 is out of range for a 2-d tensor/ },
  { name: 'item of a 2-element tensor', fn: () => f32([2]).item(), op: 'item', msg: /2 elements cannot be converted to Scalar/ },
  { name: 'foreach lists of different lengths', fn: () => torch.foreachAdd_([f32([2]), f32([2])], [f32([2])]), op: 'aten::_foreach_add_.List' },
  { name: 'foreachCopy_ of different lengths', fn: () => torch.foreachCopy_([f32([2])], []), op: 'foreach_copy_' },
  { name: 'gaussianBlur with an even kernel', fn: () => torch.gaussianBlur(f32([1, 1, 8, 8]), 4, 1), op: 'gaussianBlur', msg: /odd/ },
  { name: 'interpolate with both size and scale', fn: () => torch.interpolate(f32([1, 1, 4, 4]), { size: 2, scaleFactor: 2 }), op: 'interpolate' },
  { name: 'interpolate with an unknown mode', fn: () => torch.interpolate(f32([1, 1, 4, 4]), { size: 2, mode: 'bicubic' as 'bilinear' }), op: 'interpolate', msg: /bicubic/ },

  // ---- wrong dtypes ----
  { name: 'matmul of float and int64', fn: () => f32([2, 2]).matmul(torch.ones([2, 2], { dtype: 'int64' })), op: 'aten::matmul', msg: /Float|Long|dtype/ },
  { name: 'indexSelect with a float index', fn: () => f32([3, 2]).indexSelect(0, f32([1])), op: 'aten::index_select', msg: /int64|Long/ },
  { name: 'in-place sqrt_ of an int64 tensor', fn: () => torch.ones([2], { dtype: 'int64' }).sqrt_(), op: 'aten::sqrt_', msg: /can't be cast/ },
  { name: 'requiresGrad_ on an int64 tensor', fn: () => torch.ones([2], { dtype: 'int64' }).requiresGrad_(), op: 'requiresGrad_', msg: /floating point/ },
  { name: 'unknown dtype name', fn: () => torch.zeros([2], { dtype: 'float8' as torch.DType }), op: 'zeros', msg: /unknown dtype 'float8'/ },
  { name: 'to() an unknown dtype', fn: () => f32([2]).to(null, 'complex64' as torch.DType), op: 'to', msg: /complex64/ },
  { name: 'crossEntropy with float targets', fn: () => torch.crossEntropy(f32([2, 3]), f32([2])), op: 'aten::cross_entropy_loss' },

  // ---- devices ----
  { name: "zeros on 'cuda' without CUDA", fn: () => torch.zeros([2], { device: 'cuda' }), op: 'zeros', msg: /device 'cuda' is not available/ },
  { name: "to('cuda:0') without CUDA", fn: () => f32([2]).to('cuda:0'), op: 'to', msg: /not available/ },
  { name: "tensor() on 'cuda:3'", fn: () => torch.tensor([1, 2], { device: 'cuda:3' }), op: 'tensor', msg: /cuda:3/ },
  { name: 'a malformed device string', fn: () => f32([2]).to('gpu'), op: 'to', msg: /'cpu', 'cuda' or 'cuda:N'/ },
  { name: 'a cuda Generator without CUDA', fn: () => new torch.Generator(1, 'cuda:0'), op: 'Generator' },
  { name: 'LibTorch asked for a CUDA tensor directly', fn: () => torch.callOp('aten::zeros', '', [2], null, null, 'cuda:0'), op: 'aten::zeros' },
  { name: 'a malformed device reaching LibTorch', fn: () => torch.callOp('aten::zeros', '', [2], null, null, 'cuda:zero'), op: 'aten::zeros', msg: /argument 'device'.*not a device/ },
  { name: 'pinMemory without CUDA', fn: () => f32([2]).pinMemory(), op: 'pin_memory', msg: /needs CUDA/ },

  // ---- disposed tensors ----
  { name: 'an op on a disposed tensor names the argument', fn: () => disposed().add(1), op: 'aten::add.Scalar', msg: /argument 'self' is a disposed tensor/ },
  { name: 'a disposed tensor as second operand', fn: () => f32([2]).mul(disposed()), op: 'aten::mul.Tensor', msg: /argument 'other' is a disposed tensor/ },
  { name: 'a disposed tensor inside a list', fn: () => torch.cat([f32([2]), disposed()]), op: 'aten::cat', msg: /argument 'tensors'\[1\] is a disposed tensor/ },
  { name: 'shape of a disposed tensor', fn: () => { const t = f32([2]); void t.shape; t.dispose(); return t.shape; }, op: 'Tensor', msg: /disposed/ },
  { name: 'toArray of a disposed tensor', fn: () => disposed().toArray(), op: 'Tensor', msg: /disposed/ },
  { name: 'toTypedArray of a disposed tensor', fn: () => disposed().toTypedArray(), op: 'toBuffer', msg: /disposed/ },
  { name: 'item of a disposed tensor', fn: () => disposed().item(), op: 'item', msg: /disposed/ },
  { name: 'backward of a disposed tensor', fn: () => disposed().backward(), op: 'backward', msg: /disposed/ },
  { name: 'grad of a disposed tensor', fn: () => disposed().grad, op: 'grad', msg: /disposed/ },
  { name: 'a tensor freed by tidy, used after', fn: () => { let leaked: Tensor | undefined; torch.tidy(() => { leaked = f32([2]); }); return leaked!.sum(); }, op: 'aten::sum', msg: /disposed/ },

  // ---- wrong argument types and counts ----
  { name: 'a string where a scalar is expected', fn: () => f32([2]).add('1' as unknown as number), op: 'aten::add.Scalar', msg: /argument 'other' expects Scalar, got string/ },
  { name: 'a string in a shape', fn: () => f32([2]).reshape(['a'] as unknown as number[]), op: 'aten::reshape', msg: /argument 'shape'.*string/ },
  { name: 'a fractional size', fn: () => f32([4]).reshape(2.5, 2), op: 'aten::reshape', msg: /2\.5/ },
  { name: 'a fractional index', fn: () => f32([4]).narrow(0, 0.5, 1), op: 'aten::narrow', msg: /argument 'start'.*0\.5/ },
  { name: 'a string as a bool', fn: () => torch.batchNorm(f32([2, 3]), null, null, null, null, 'yes' as unknown as boolean), op: 'aten::batch_norm', msg: /argument 'training' expects bool, got string/ },
  { name: 'a shape that is not an array', fn: () => torch.zeros('abc' as unknown as number[]), op: 'aten::zeros', msg: /argument 'size'/ },
  { name: 'too many arguments', fn: () => torch.callOp('aten::neg', '', f32([2]), 1, 2), op: 'aten::neg', msg: /takes 1 arguments, got 3/ },
  { name: 'a missing required argument', fn: () => torch.callOp('aten::add', 'Tensor', f32([2])), op: 'aten::add.Tensor', msg: /argument 'other'.*required/ },
  { name: 'a number where a tensor is expected', fn: () => torch.callOp('aten::add', 'Tensor', f32([2]), 2), op: 'aten::add.Tensor', msg: /must be a Tensor/ },
  { name: 'null where a tensor is required', fn: () => torch.callOp('aten::neg', '', null), op: 'aten::neg', msg: /argument 'self' expects Tensor, got null/ },
  { name: 'a non-tensor object as weight', fn: () => torch.conv2d(f32([1, 1, 4, 4]), null as unknown as Tensor), cls: 'TypeError' },
  { name: 'an unknown padding mode', fn: () => torch.pad(f32([1, 1, 4, 4]), [1, 1], 'mirror' as 'reflect'), op: 'aten::pad' },
  { name: 'an unknown reduction', fn: () => torch.crossEntropy(f32([2, 3]), torch.zeros([2], { dtype: 'int64' }), { reduction: 'avg' as 'mean' }), op: 'cross_entropy' },
  { name: 'a bad seed', fn: () => torch.manualSeed(-1), op: 'manualSeed', msg: /seed/ },
  { name: 'a fractional Generator seed', fn: () => new torch.Generator(1.5), op: 'Generator', msg: /seed/ },
  { name: 'a fake generator', fn: () => torch.rand([2], { generator: { id: 999 } as unknown as torch.Generator }), op: 'aten::rand.generator', msg: /not a generator handle/ },
  { name: 'a generator state of the wrong size', fn: () => new torch.Generator(1).setState(torch.zeros([3], { dtype: 'uint8' })), op: 'Generator.setState' },
  { name: 'an unknown backend flag', fn: () => torch.backends.set('fastMath' as torch.BackendFlag, true), op: 'backendFlag', msg: /fastMath/ },
  { name: 'an absurd thread count', fn: () => torch.setNumThreads(1e10), op: 'setNumThreads' },
  { name: 'randint with low > high', fn: () => torch.randint(5, 2, [3]), op: 'aten::randint.low' },

  // ---- bad typed arrays and data ----
  { name: 'Uint16Array without a dtype', fn: () => torch.tensor(new Uint16Array(4)), op: 'tensor', msg: /pass dtype 'float16' or 'bfloat16'/ },
  { name: 'Uint16Array as int32', fn: () => torch.tensor(new Uint16Array(4), { dtype: 'int32' }), op: 'tensor', msg: /not 'int32'/ },
  { name: 'an Int8Array', fn: () => torch.tensor(new Int8Array(4) as unknown as Float32Array), op: 'tensor', msg: /Int8Array carries no tensor dtype/ },
  { name: 'a typed array that does not carry the dtype code', fn: () => native.fromBuffer(new Float32Array(4), [4], 7), op: 'fromBuffer', msg: /Double needs a Float64Array, got a Float32Array/ },
  { name: 'a BigInt64Array given as int32 data', fn: () => native.fromBuffer(new BigInt64Array(2), [2], 3), op: 'fromBuffer', msg: /Int32Array, got a BigInt64Array/ },
  { name: 'data that does not fill the shape', fn: () => torch.tensor(new Float64Array(3), { shape: [2, 2] }), op: 'fromBuffer', msg: /\[2,2\].*3 elements/ },
  { name: 'a detached ArrayBuffer', fn: () => { const a = new Float32Array(4); structuredClone(a.buffer, { transfer: [a.buffer] }); return torch.tensor(a, { shape: [4] }); }, op: 'fromBuffer' },
  { name: 'a DataView', fn: () => torch.tensor(new DataView(new ArrayBuffer(8)) as unknown as Float32Array), op: 'tensor', msg: /DataView/ },
  { name: 'a ragged nested array', fn: () => torch.tensor([[1, 2], [3]]), op: 'tensor', msg: /ragged/ },
  { name: 'a string inside a nested array', fn: () => torch.tensor([1, 'a'] as unknown as number[]), op: 'tensor', msg: /numbers and booleans/ },
  { name: 'not an array at all', fn: () => torch.tensor('abc' as unknown as number[]), op: 'tensor' },

  // ---- negative and impossible shapes ----
  { name: 'zeros with a negative size', fn: () => torch.zeros([-1, 2]), op: 'aten::zeros', msg: /negative dimension -1|must be non-negative/ },  // 1.13's words, 2.x's
  { name: 'a negative shape for data', fn: () => torch.tensor(new Float32Array(4), { shape: [-2, -2] }), op: 'fromBuffer', msg: /non-negative/ },
  { name: 'reshape to a negative size', fn: () => f32([6]).reshape(-2, -3), op: 'aten::reshape' },
  { name: 'an allocation too large for the host', fn: () => torch.empty([1e6, 1e6, 1e3]), op: 'aten::empty.memory_format' },
  // Linux would grant this one (less than RAM + swap) and kill a process once it is touched.
  { name: 'a tensor larger than the free memory', fn: () => torch.empty([Math.ceil((freeBytes() + 2 ** 30) / 4)]), op: 'aten::empty.memory_format', msg: /a CPU tensor of [\d.]+ GiB is more than the [\d.]+ GiB of memory available/ },

  // ---- unknown ops ----
  { name: 'an unknown op name', fn: () => torch.callOp('aten::does_not_exist', ''), op: 'aten::does_not_exist', msg: /no such operator/ },
  { name: 'an unknown overload', fn: () => torch.callOp('aten::add', 'NoSuchOverload', f32([2])), op: 'aten::add.NoSuchOverload', msg: /no such operator/ },
  { name: 'an unknown op schema', fn: () => torch.opSchema('nonsense'), op: 'nonsense' },

  // ---- autograd misuse ----
  { name: 'backward of a tensor without grad', fn: () => f32([1]).sum().backward(), op: 'backward', msg: /does not require grad/ },
  { name: 'backward of a non-scalar without gradient', fn: () => f32([2]).requiresGrad_().mul(2).backward(), op: 'backward', msg: /only for scalar outputs/ },
  { name: 'backward twice without retainGraph', fn: () => { const y = f32([2]).requiresGrad_().exp().sum(); y.backward(); y.backward(); }, op: 'backward', msg: /second time/ },
  { name: 'in-place update of a leaf outside noGrad', fn: () => f32([2]).requiresGrad_().mul_(2), op: 'aten::mul_.Scalar', msg: /leaf Variable that requires grad/ },
  { name: 'one gradient for two outputs', fn: () => torch.backward([f32([1]), f32([1])], [f32([1])]), op: 'backward', msg: /one gradient per output/ },
  { name: 'noGrad around an async function', fn: () => torch.noGrad(async () => 1), op: 'noGrad', msg: /synchronous/ },
];
