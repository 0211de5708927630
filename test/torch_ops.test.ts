// Every op of the facade, and its input gradients, against PyTorch (PYTHON: the lane's own, Debian's
// 1.13 or the torch 2.x virtualenv) on the same seeded inputs (test/torch_ref.ts builds them,
// test/reference/ops_ref.py computes the reference for the whole table in one process). The same
// table runs on cpu and on cuda:0 (with TF32 off, so float32 means float32), whose rows are
// pending where no GPU is visible.
//
// Tolerances (|ours - ref| <= atol + rtol * |ref|), chosen for float32 across devices; on the CPU
// both sides run the same LibTorch build and most cases match bit for bit. Gradients get the
// forward tolerance, or ELEM where the backward sums contributions (broadcast, overlapping
// windows, duplicate indices) in an order a GPU may change:
//   EXACT (0)          creation, casts, shape ops, selection, comparisons, sort/topk, max/min,
//                      pooling max, nearest resize, padding, CPU random streams, integer results
//   ELEM 1e-6 + 1e-5   pointwise float maths (CUDA's libm may differ by an ulp or two)
//   RED  1e-5 + 1e-5   reductions, softmax, norms, normalize, cosine (summation order)
//   MM   1e-4 + 1e-4   matmul, linear, conv, batch norm (blocked accumulation; BN's backward
//                      combines three reductions), and their gradients
//   BLUR 1e-5 + 1e-5   gaussian blur (our kernel weights are computed in float64 then rounded,
//                      torchvision's in float32)
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { OpCase, RefResult, Input, checkCase, inputs, pythonReference, Tol } from './torch_ref';
import { describeIf, noCuda } from './requires';

const EXACT: Tol = { atol: 0, rtol: 0 };
const ELEM: Tol = { atol: 1e-6, rtol: 1e-5 };
const RED: Tol = { atol: 1e-5, rtol: 1e-5 };
const MM: Tol = { atol: 1e-4, rtol: 1e-4 };
const BLUR: Tol = { atol: 1e-5, rtol: 1e-5 };

const { N, P, I, B, V, perm } = inputs(20240611);
const F = torch;

function c(name: string, inp: Input[], ours: OpCase['ours'], py: string, tol: Tol = ELEM, gradTol?: Tol): OpCase {
  return { name, inputs: inp, ours, py, tol, gradTol };
}

const creation: OpCase[] = [
  c('zeros int64', [], (_, d) => torch.zeros([2, 3], { dtype: 'int64', device: d }), 'torch.zeros(2, 3, dtype=torch.int64)', EXACT),
  c('ones float64', [], (_, d) => torch.ones([3], { dtype: 'float64', device: d }), 'torch.ones(3, dtype=torch.float64)', EXACT),
  c('full float32 / bool', [], (_, d) => [torch.full([2, 2], 2.5, { device: d }), torch.full([3], true, { device: d })], '[torch.full((2, 2), 2.5), torch.full((3,), True)]', EXACT),
  c('arange int / float', [], (_, d) => [torch.arange(5, undefined, 1, { device: d }), torch.arange(0, 1, 0.25, { dtype: 'float32', device: d }), torch.arange(2, 11, 3, { device: d })],
    '[torch.arange(5), torch.arange(0, 1, 0.25), torch.arange(2, 11, 3)]', EXACT),
  c('linspace, eye', [], (_, d) => [torch.linspace(-1, 1, 7, { device: d }), torch.eye(3, { device: d })], '[torch.linspace(-1, 1, 7), torch.eye(3)]', EXACT),
  c('zerosLike / onesLike / fullLike', [N([2, 3], false)], (x) => [torch.zerosLike(x[0]), torch.onesLike(x[0], { dtype: 'int32' }), torch.fullLike(x[0], 7)],
    '[torch.zeros_like(x[0]), torch.ones_like(x[0], dtype=torch.int32), torch.full_like(x[0], 7)]', EXACT),
  c('tensor from nested arrays', [], (_, device) => [
    torch.tensor([[1, 2, 3], [4, 5, 6]], { device }), torch.tensor([[true, false], [false, true]], { device }), torch.tensor([[1, -2], [3, 4]], { dtype: 'int64', device }),
    torch.tensor([0.1, 1 / 3, 65504, -2.5e-5], { dtype: 'float16', device }), torch.tensor([0.1, 1 / 3, 3e38], { dtype: 'bfloat16', device }),
    torch.tensor([[0.1, 0.2]], { dtype: 'float64', device }), torch.tensor([3, 250], { dtype: 'uint8', device }), torch.tensor([[[7]]], { dtype: 'int32', device }),
  ], '[torch.tensor([[1., 2, 3], [4, 5, 6]]), torch.tensor([[True, False], [False, True]]), torch.tensor([[1, -2], [3, 4]]), ' +
     'torch.tensor([0.1, 1 / 3, 65504, -2.5e-5], dtype=torch.float16), torch.tensor([0.1, 1 / 3, 3e38], dtype=torch.bfloat16), ' +
     'torch.tensor([[0.1, 0.2]], dtype=torch.float64), torch.tensor([3, 250], dtype=torch.uint8), torch.tensor([[[7]]], dtype=torch.int32)]', EXACT),
  c('casts', [V([6], [-2.7, -0.5, 0, 0.49, 1.5, 300.25])], (x) => ['float16', 'bfloat16', 'float64', 'int32', 'int64', 'bool'].map((d) => x[0].to(null, d as torch.DType)),
    '[x[0].to(d) for d in (torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.bool)]', EXACT),
  c('casts to uint8', [V([4], [0, 1.9, 200.5, 255])], (x) => x[0].to(null, 'uint8'), 'x[0].to(torch.uint8)', EXACT),
  c('to(cpu) and back keeps the gradient path', [N([3, 2])], (x, d) => x[0].to('cpu').to(d).mul(2), 'x[0].to("cpu") * 2', EXACT),
  c('to(device, dtype) with gradient', [N([3, 2])], (x, d) => x[0].to('cpu', 'float64').to(d).mul(3), 'x[0].to("cpu", torch.float64) * 3', EXACT),
];

const elementwise: OpCase[] = [
  c('add broadcast, alpha', [N([3, 4]), N([4])], (x) => x[0].add(x[1], 2), 'torch.add(x[0], x[1], alpha=2)'),
  c('add / sub scalar', [N([3, 4])], (x) => [x[0].add(1.5), x[0].sub(0.25, 2)], '[x[0] + 1.5, torch.sub(x[0], 0.25, alpha=2)]'),
  c('sub, rsub', [N([3, 4]), N([3, 4])], (x) => [x[0].sub(x[1]), x[0].rsub(3)], '[x[0] - x[1], 3 - x[0]]'),
  c('mul, div tensors', [N([2, 3, 4]), P([3, 1])], (x) => [x[0].mul(x[1]), x[0].div(x[1])], '[x[0] * x[1], x[0] / x[1]]'),
  c('mul, div scalars', [N([5])], (x) => [x[0].mul(-3), x[0].div(0.7)], '[x[0] * -3, x[0] / 0.7]'),
  c('pow', [P([3, 4]), N([3, 4])], (x) => [x[0].pow(x[1]), x[0].pow(2), x[0].pow(0.5)], '[x[0] ** x[1], x[0] ** 2, x[0] ** 0.5]'),
  c('neg, abs, square', [N([3, 4])], (x) => [x[0].neg(), x[0].abs(), x[0].square()], '[-x[0], x[0].abs(), x[0].square()]'),
  c('exp, log, log1p, sqrt, rsqrt, reciprocal', [P([3, 4])], (x) => [x[0].exp(), x[0].log(), x[0].log1p(), x[0].sqrt(), x[0].rsqrt(), x[0].reciprocal()],
    '[x[0].exp(), x[0].log(), x[0].log1p(), x[0].sqrt(), x[0].rsqrt(), x[0].reciprocal()]'),
  c('sin, cos, sigmoid, tanh, relu', [N([4, 5])], (x) => [x[0].sin(), x[0].cos(), x[0].sigmoid(), x[0].tanh(), x[0].relu(), F.relu(x[0])],
    '[x[0].sin(), x[0].cos(), x[0].sigmoid(), x[0].tanh(), x[0].relu(), F.relu(x[0])]'),
  c('floor, ceil, round, trunc, sign', [N([12], true, 3)], (x) => [x[0].floor(), x[0].ceil(), x[0].round(), x[0].trunc(), x[0].sign()],
    '[x[0].floor(), x[0].ceil(), x[0].round(), x[0].trunc(), x[0].sign()]', EXACT),
  c('clamp, clampMin, clampMax', [N([4, 4])], (x) => [x[0].clamp(-0.5, 0.5), x[0].clamp(null, 0.1), x[0].clampMin(0), x[0].clampMax(-0.2)],
    '[x[0].clamp(-0.5, 0.5), x[0].clamp(max=0.1), x[0].clamp_min(0), x[0].clamp_max(-0.2)]'),
  c('maximum, minimum', [N([3, 4]), N([4])], (x) => [x[0].maximum(x[1]), x[0].minimum(x[1])], '[torch.maximum(x[0], x[1]), torch.minimum(x[0], x[1])]'),
  c('remainder, fmod', [N([10], true, 3), P([10])], (x) => [x[0].remainder(x[1]), x[0].remainder(0.7), x[0].fmod(x[1]), x[0].fmod(-0.7)],
    '[torch.remainder(x[0], x[1]), torch.remainder(x[0], 0.7), torch.fmod(x[0], x[1]), torch.fmod(x[0], -0.7)]'),
  c('atan2', [N([3, 4]), N([3, 4])], (x) => x[0].atan2(x[1]), 'torch.atan2(x[0], x[1])'),
  c('lerp scalar and tensor weight', [N([3, 4]), N([3, 4]), P([4])], (x) => [x[0].lerp(x[1], 0.3), x[0].lerp(x[1], x[2])],
    '[torch.lerp(x[0], x[1], 0.3), torch.lerp(x[0], x[1], x[2])]'),
  c('softmax, logSoftmax', [N([3, 5, 2])], (x) => [x[0].softmax(1), x[0].logSoftmax(-1), F.softmax(x[0], 0)],
    '[x[0].softmax(1), x[0].log_softmax(-1), F.softmax(x[0], 0)]', RED),
  c('isnan, isfinite', [V([5], [0, NaN, Infinity, -Infinity, 1.5])], (x) => [x[0].isnan(), x[0].isfinite()], '[x[0].isnan(), x[0].isfinite()]', EXACT),
  c('integer arithmetic keeps int64, true division', [I([6], -5, 5)], (x) => [x[0].add(2), x[0].mul(3), x[0].div(2), x[0].remainder(3)],
    '[x[0] + 2, x[0] * 3, x[0] / 2, x[0] % 3]', EXACT),
  c('erf through callOp', [N([6])], (x) => torch.callOp('aten::erf', '', x[0]) as Tensor, 'torch.erf(x[0])'),
];

const inplace: OpCase[] = [
  c('add_, sub_ (tensor, scalar, alpha)', [N([3, 4]), N([4])], (x) => [x[0].clone().add_(x[1], 0.5), x[0].clone().sub_(1.25), x[0].clone().sub_(x[1], 2)],
    '[x[0].clone().add_(x[1], alpha=0.5), x[0].clone().sub_(1.25), x[0].clone().sub_(x[1], alpha=2)]'),
  c('mul_, div_', [N([3, 4]), P([3, 4])], (x) => [x[0].clone().mul_(x[1]), x[0].clone().mul_(0.5), x[0].clone().div_(x[1]), x[0].clone().div_(4)],
    '[x[0].clone().mul_(x[1]), x[0].clone().mul_(0.5), x[0].clone().div_(x[1]), x[0].clone().div_(4)]'),
  c('clamp_, clampMin_, relu_, sqrt_', [N([3, 4]), P([5])], (x) => [x[0].clone().clamp_(-0.3, 0.4), x[0].clone().clampMin_(0.1), x[0].clone().relu_(), x[1].clone().sqrt_()],
    '[x[0].clone().clamp_(-0.3, 0.4), x[0].clone().clamp_min_(0.1), x[0].clone().relu_(), x[1].clone().sqrt_()]'),
  c('lerp_, addcmul_, addcdiv_', [N([3, 4]), N([3, 4]), N([3, 4]), P([3, 4])],
    (x) => [x[0].clone().lerp_(x[1], 0.1), x[0].clone().addcmul_(x[1], x[2], 0.5), x[0].clone().addcdiv_(x[1], x[3], -2)],
    '[x[0].clone().lerp_(x[1], 0.1), x[0].clone().addcmul_(x[1], x[2], value=0.5), x[0].clone().addcdiv_(x[1], x[3], value=-2)]'),
  c('addcmul, addcdiv (out of place, broadcasting)', [N([3, 4]), N([4]), N([3, 1]), P([3, 4])], (x) => [x[0].addcmul(x[1], x[2], 0.5), x[0].addcdiv(x[1], x[3], -2)],
    '[torch.addcmul(x[0], x[1], x[2], value=0.5), torch.addcdiv(x[0], x[1], x[3], value=-2)]'),
  c('indexCopy_, indexAdd_ (duplicates accumulate), out-of-place forms', [N([5, 3]), perm(5), N([5, 3]), V([4], [1, 3, 1, 0], 'int64'), N([4, 3])],
    (x) => [x[0].clone().indexCopy_(0, x[1], x[2]), x[0].indexCopy(0, x[1], x[2]), x[0].clone().indexAdd_(0, x[3], x[4], 2), x[0].indexAdd(0, x[3], x[4])],
    '[x[0].clone().index_copy_(0, x[1], x[2]), x[0].index_copy(0, x[1], x[2]), x[0].clone().index_add_(0, x[3], x[4], alpha=2), x[0].index_add(0, x[3], x[4])]'),
  c('maskedFill_, maskedFill', [N([4, 5]), B([4, 5])], (x) => [x[0].clone().maskedFill_(x[1], -1), x[0].maskedFill(x[1], 3)],
    '[x[0].clone().masked_fill_(x[1], -1), x[0].masked_fill(x[1], 3)]', EXACT),
  c('indexPut_ accumulate with duplicates', [N([5, 3]), V([4], [0, 3, 0, 4], 'int64'), N([4, 3])],
    (x) => [x[0].clone().indexPut_([x[1]], x[2], true), torch.zeros([5, 3], { device: x[0].device }).indexPut_([x[1].slice(0, 1, null)], x[2].slice(0, 1, null))],
    '[x[0].clone().index_put_((x[1],), x[2], accumulate=True), torch.zeros(5, 3).index_put_((x[1][1:],), x[2][1:])]'),
  c('copy_, fill_, zero_', [N([3, 4]), N([4])], (x) => [x[0].clone().copy_(x[1]), x[0].clone().fill_(2), x[0].clone().zero_()],
    '[x[0].clone().copy_(x[1]), x[0].clone().fill_(2), x[0].clone().zero_()]', EXACT, ELEM),
];

const comparisons: OpCase[] = [
  c('eq, ne, lt, le, gt, ge (tensor)', [V([8], [0, 1, 2, 2, -1, 3, 1, 0]), V([8], [0, 2, 2, 1, -1, 0, 1, 5])],
    (x) => [x[0].eq(x[1]), x[0].ne(x[1]), x[0].lt(x[1]), x[0].le(x[1]), x[0].gt(x[1]), x[0].ge(x[1])],
    '[x[0] == x[1], x[0] != x[1], x[0] < x[1], x[0] <= x[1], x[0] > x[1], x[0] >= x[1]]', EXACT),
  c('eq, ne, lt, le, gt, ge (scalar)', [V([6], [0, 1, 2, 2, -1, 3])], (x) => [x[0].eq(2), x[0].ne(2), x[0].lt(1), x[0].le(1), x[0].gt(0), x[0].ge(2)],
    '[x[0] == 2, x[0] != 2, x[0] < 1, x[0] <= 1, x[0] > 0, x[0] >= 2]', EXACT),
  c('where tensor/tensor', [B([3, 4]), N([3, 4]), N([4])], (x) => torch.where(x[0], x[1], x[2]), 'torch.where(x[0], x[1], x[2])', EXACT, ELEM),
  c('where with scalars', [B([3, 4]), N([3, 4])], (x) => [torch.where(x[0], x[1], 0), torch.where(x[0], -1.5, x[1])],
    '[torch.where(x[0], x[1], torch.tensor(0.)), torch.where(x[0], torch.tensor(-1.5), x[1])]', EXACT),
  c('logical and/or/xor/not', [B([6]), B([6])], (x) => [x[0].logicalAnd(x[1]), x[0].logicalOr(x[1]), x[0].logicalXor(x[1]), x[0].logicalNot()],
    '[x[0] & x[1], x[0] | x[1], x[0] ^ x[1], ~x[0]]', EXACT),
];

const reductions: OpCase[] = [
  c('sum all / dims / keepdim', [N([3, 4, 5])], (x) => [x[0].sum(), x[0].sum([0, 2]), x[0].sum(1, true)],
    '[x[0].sum(), x[0].sum((0, 2)), x[0].sum(1, keepdim=True)]', RED),
  c('mean all / dim', [N([3, 4, 5])], (x) => [x[0].mean(), x[0].mean(1), x[0].mean([-1, 0], true)], '[x[0].mean(), x[0].mean(1), x[0].mean((-1, 0), keepdim=True)]', RED),
  c('max, min (all)', [N([4, 6])], (x) => [x[0].max(), x[0].min()], '[x[0].max(), x[0].min()]', EXACT),
  c('maxDim, minDim (values, indices)', [N([4, 6])], (x) => [...x[0].maxDim(1), ...x[0].minDim(0, true)],
    '[*x[0].max(1), *x[0].min(0, keepdim=True)]', EXACT),
  c('amax, amin', [N([3, 4, 5])], (x) => [x[0].amax([1, 2]), x[0].amin(0, true)], '[x[0].amax((1, 2)), x[0].amin(0, keepdim=True)]', EXACT),
  c('argmax, argmin', [N([4, 6], false)], (x) => [x[0].argmax(1), x[0].argmax(), x[0].argmin(0, true)], '[x[0].argmax(1), x[0].argmax(), x[0].argmin(0, keepdim=True)]', EXACT),
  c('prod', [P([6])], (x) => x[0].prod(), 'x[0].prod()', RED),
  c('norm p=2, p=1, dims', [N([3, 4, 5])], (x) => [x[0].norm(), x[0].norm(1, 1, true), x[0].norm(2, [0, 2])],
    '[torch.linalg.vector_norm(x[0]), torch.linalg.vector_norm(x[0], 1, 1, keepdim=True), torch.linalg.vector_norm(x[0], 2, (0, 2))]', RED),
  c('std, var (correction 1 and 0)', [N([4, 6])], (x) => [x[0].std(), x[0].std(0, false, 0), x[0].var(1, true), x[0].var(undefined, false, 0)],
    '[x[0].std(), x[0].std(0, unbiased=False), x[0].var(1, keepdim=True), x[0].var(unbiased=False)]', RED),
  c('logsumexp, cumsum', [N([3, 5])], (x) => [x[0].logsumexp(1), x[0].cumsum(0)], '[x[0].logsumexp(1), x[0].cumsum(0)]', RED),
  c('sort, argsort, topk', [N([3, 7])], (x) => [...x[0].sort(1, true), x[0].argsort(0), ...x[0].topk(3, 1)],
    '[*x[0].sort(1, descending=True), x[0].argsort(0), *x[0].topk(3, 1)]', EXACT),
  c('all, any', [B([3, 4])], (x) => [x[0].all(), x[0].any(), x[0].all(1), x[0].any(0, true)], '[x[0].all(), x[0].any(), x[0].all(1), x[0].any(0, keepdim=True)]', EXACT),
  c('nonzero', [B([3, 4])], (x) => x[0].nonzero(), 'x[0].nonzero()', EXACT),
];

const shapes: OpCase[] = [
  c('reshape, view (varargs and array)', [N([3, 4])], (x) => [x[0].reshape(4, 3), x[0].view([2, 6]), x[0].reshape(-1)], '[x[0].reshape(4, 3), x[0].view(2, 6), x[0].reshape(-1)]', EXACT),
  c('permute, transpose, T, contiguous', [N([2, 3, 4]), N([3, 5])], (x) => [x[0].permute(2, 0, 1), x[0].transpose(0, 2).contiguous(), x[1].T],
    '[x[0].permute(2, 0, 1), x[0].transpose(0, 2).contiguous(), x[1].T]', EXACT),
  c('flatten, unsqueeze, squeeze', [N([2, 1, 3, 1])], (x) => [x[0].flatten(1), x[0].unsqueeze(0), x[0].squeeze(), x[0].squeeze(1)],
    '[x[0].flatten(1), x[0].unsqueeze(0), x[0].squeeze(), x[0].squeeze(1)]', EXACT),
  c('narrow, slice with step, select', [N([4, 6])], (x) => [x[0].narrow(1, 1, 3), x[0].slice(1, 0, null, 2), x[0].slice(0, -3, -1), x[0].select(0, 2)],
    '[x[0].narrow(1, 1, 3), x[0][:, ::2], x[0][-3:-1], x[0][2]]', EXACT),
  c('indexSelect, gather', [N([4, 5]), I([3], 0, 4), I([4, 2], 0, 5)], (x) => [x[0].indexSelect(0, x[1]), x[0].gather(1, x[2])],
    '[x[0].index_select(0, x[1]), x[0].gather(1, x[2])]', EXACT, ELEM),
  c('scatter, scatterAdd', [N([3, 5]), perm(5), N([3, 5])],
    (x) => { const idx = x[1].unsqueeze(0).expand(3, 5); return [x[0].scatter(1, idx, x[2]), x[0].scatter(1, idx.narrow(1, 0, 2), 9), x[0].scatterAdd(1, idx, x[2])]; },
    'idx = x[1].unsqueeze(0).expand(3, 5)\nreturn [x[0].scatter(1, idx, x[2]), x[0].scatter(1, idx[:, :2], 9), x[0].scatter_add(1, idx, x[2])]', EXACT, ELEM),
  c('advanced index with int and bool tensors', [N([4, 5]), I([3], 0, 4), B([4, 5]), I([3], 0, 5)],
    (x) => [x[0].index([x[1]]), x[0].index([null, x[3]]), x[0].index([x[2]]), x[0].index([x[1], x[3]])],
    '[x[0][x[1]], x[0][:, x[3]], x[0][x[2]], x[0][x[1], x[3]]]', EXACT, ELEM),
  c('flip, roll', [N([2, 3, 4])], (x) => [x[0].flip(0, 2), x[0].flip([1]), x[0].roll(1, 2), x[0].roll([1, -1], [0, 1])],
    '[x[0].flip(0, 2), x[0].flip(1), x[0].roll(1, 2), x[0].roll((1, -1), (0, 1))]', EXACT),
  c('expand, expandAs, repeat', [N([3, 1]), N([2, 3, 4], false)], (x) => [x[0].expand(2, 3, 4), x[0].expandAs(x[1]), x[0].repeat(2, 1, 3)],
    '[x[0].expand(2, 3, 4), x[0].expand_as(x[1]), x[0].repeat(2, 1, 3)]', EXACT, ELEM),
  c('cat, stack', [N([2, 3]), N([2, 2]), N([2, 3])], (x) => [torch.cat([x[0], x[1]], 1), torch.stack([x[0], x[2]]), torch.stack([x[0], x[2]], -1)],
    '[torch.cat([x[0], x[1]], 1), torch.stack([x[0], x[2]]), torch.stack([x[0], x[2]], -1)]', EXACT),
  c('split, split sizes, chunk, unbind', [N([4, 5])], (x) => [...x[0].split(2, 1), ...x[0].split([1, 3], 0), ...x[0].chunk(2, 0), ...x[0].unbind(1)],
    '[*x[0].split(2, 1), *x[0].split([1, 3], 0), *x[0].chunk(2, 0), *x[0].unbind(1)]', EXACT),
  c('clone, detach, alias', [N([3]), N([3])], (x) => [x[0].clone().mul(x[1]), x[0].detach().mul(x[1]), x[0].alias().mul(2)],
    '[x[0].clone() * x[1], x[0].detach() * x[1], x[0] * 2]', EXACT),
];

const linalg: OpCase[] = [
  c('matmul 2-d, batched broadcast, vector', [N([3, 4]), N([4, 5]), N([2, 3, 4]), N([4])],
    (x) => [x[0].matmul(x[1]), x[2].matmul(x[1]), x[0].matmul(x[3])], '[x[0] @ x[1], x[2] @ x[1], x[0] @ x[3]]', MM),
  c('mm, bmm', [N([3, 4]), N([4, 5]), N([2, 3, 4]), N([2, 4, 5])], (x) => [x[0].mm(x[1]), x[2].bmm(x[3])], '[x[0].mm(x[1]), x[2].bmm(x[3])]', MM),
  c('linear with and without bias', [N([6, 4]), N([5, 4]), N([5]), N([2, 3, 4])], (x) => [F.linear(x[0], x[1], x[2]), F.linear(x[3], x[1])],
    '[F.linear(x[0], x[1], x[2]), F.linear(x[3], x[1])]', MM),
];

const nn: OpCase[] = [
  c('conv2d stride 2 padding 1 bias', [N([2, 3, 9, 9]), N([4, 3, 3, 3]), N([4])], (x) => F.conv2d(x[0], x[1], x[2], { stride: 2, padding: 1 }),
    'F.conv2d(x[0], x[1], x[2], stride=2, padding=1)', MM),
  c('conv2d groups, dilation, no bias, rectangular', [N([2, 4, 8, 10]), N([6, 2, 3, 2])], (x) => F.conv2d(x[0], x[1], null, { dilation: [2, 1], groups: 2, padding: [2, 0] }),
    'F.conv2d(x[0], x[1], None, dilation=(2, 1), groups=2, padding=(2, 0))', MM),
  c('batchNorm train updates running stats', [N([4, 3, 5, 5]), N([3], false, 0.1), P([3], false), N([3]), N([3])],
    (x) => { const rm = x[1].clone(); const rv = x[2].clone(); return [F.batchNorm(x[0], rm, rv, x[3], x[4], true, 0.1, 1e-5), rm, rv]; },
    'rm = x[1].clone(); rv = x[2].clone()\nreturn [F.batch_norm(x[0], rm, rv, x[3], x[4], training=True, momentum=0.1, eps=1e-5), rm, rv]', MM),
  c('batchNorm eval uses running stats', [N([4, 3, 5, 5]), N([3], false, 0.1), P([3], false), N([3]), N([3])],
    (x) => F.batchNorm(x[0], x[1], x[2], x[3], x[4], false), 'F.batch_norm(x[0], x[1], x[2], x[3], x[4], training=False)', MM),
  c('batchNorm 1-d input (MLP) momentum 0.01', [N([8, 6]), N([6], false, 0.1), P([6], false), N([6]), N([6])],
    (x) => { const rm = x[1].clone(); const rv = x[2].clone(); return [F.batchNorm(x[0], rm, rv, x[3], x[4], true, 0.01, 1e-3), rm, rv]; },
    'rm = x[1].clone(); rv = x[2].clone()\nreturn [F.batch_norm(x[0], rm, rv, x[3], x[4], training=True, momentum=0.01, eps=1e-3), rm, rv]', MM),
  c('maxPool2d', [N([2, 3, 9, 9])], (x) => [F.maxPool2d(x[0], 3, { stride: 2, padding: 1 }), F.maxPool2d(x[0], 2, { ceilMode: true }), F.maxPool2d(x[0], [3, 2], { stride: [1, 2], dilation: 2 })],
    '[F.max_pool2d(x[0], 3, 2, 1), F.max_pool2d(x[0], 2, ceil_mode=True), F.max_pool2d(x[0], (3, 2), (1, 2), dilation=2)]', EXACT, ELEM),
  c('avgPool2d, adaptiveAvgPool2d', [N([2, 3, 7, 7])],
    (x) => [F.avgPool2d(x[0], 2), F.avgPool2d(x[0], 3, { stride: 2, padding: 1, countIncludePad: false }), F.adaptiveAvgPool2d(x[0], 3), F.adaptiveAvgPool2d(x[0], [1, 1])],
    '[F.avg_pool2d(x[0], 2), F.avg_pool2d(x[0], 3, 2, 1, count_include_pad=False), F.adaptive_avg_pool2d(x[0], 3), F.adaptive_avg_pool2d(x[0], 1)]', RED),
  c('interpolate nearest (size, scale)', [N([1, 2, 4, 6])], (x) => [F.interpolate(x[0], { size: [5, 7] }), F.interpolate(x[0], { scaleFactor: 2 })],
    '[F.interpolate(x[0], size=(5, 7)), F.interpolate(x[0], scale_factor=2)]', EXACT, ELEM),
  c('interpolate bilinear (align corners both ways, scale)', [N([1, 2, 5, 6])],
    (x) => [F.interpolate(x[0], { size: [8, 9], mode: 'bilinear' }), F.interpolate(x[0], { size: [3, 4], mode: 'bilinear', alignCorners: true }), F.interpolate(x[0], { scaleFactor: 0.5, mode: 'bilinear' })],
    '[F.interpolate(x[0], size=(8, 9), mode="bilinear", align_corners=False), F.interpolate(x[0], size=(3, 4), mode="bilinear", align_corners=True), ' +
    'F.interpolate(x[0], scale_factor=0.5, mode="bilinear", align_corners=False)]', ELEM),
  c('interpolate bilinear antialias (downsampling)', [N([2, 3, 16, 16])], (x) => F.interpolate(x[0], { size: [5, 7], mode: 'bilinear', antialias: true }),
    'F.interpolate(x[0], size=(5, 7), mode="bilinear", align_corners=False, antialias=True)', ELEM),
  c('pad constant, reflect, replicate, circular', [N([1, 2, 4, 5])],
    (x) => [F.pad(x[0], [1, 2, 3, 0], 'constant', 0.5), F.pad(x[0], [2, 2, 2, 2], 'reflect'), F.pad(x[0], [1, 0, 0, 2], 'replicate'), F.pad(x[0], [1, 1, 1, 1], 'circular')],
    '[F.pad(x[0], (1, 2, 3, 0), value=0.5), F.pad(x[0], (2, 2, 2, 2), mode="reflect"), F.pad(x[0], (1, 0, 0, 2), mode="replicate"), F.pad(x[0], (1, 1, 1, 1), mode="circular")]', EXACT, ELEM),
  c('normalize', [N([4, 6]), N([2, 3, 5])], (x) => [F.normalize(x[0]), F.normalize(x[1], 2, 2), F.normalize(x[0], 1, 0)],
    '[F.normalize(x[0]), F.normalize(x[1], 2, 2), F.normalize(x[0], 1, 0)]', RED),
  c('cosineSimilarity', [N([4, 6]), N([4, 6]), N([2, 3, 5]), N([2, 3, 5])], (x) => [F.cosineSimilarity(x[0], x[1]), F.cosineSimilarity(x[2], x[3], 2)],
    '[F.cosine_similarity(x[0], x[1]), F.cosine_similarity(x[2], x[3], 2)]', RED),
  c('gaussianBlur one sigma (torchvision)', [P([2, 3, 12, 12])], (x) => F.gaussianBlur(x[0], 5, 1.3), 'TF.gaussian_blur(x[0], [5, 5], [1.3, 1.3])', BLUR),
  c('gaussianBlur sigma per image (torchvision per image)', [P([2, 3, 12, 12])], (x) => F.gaussianBlur(x[0], 7, [0.7, 2.0]),
    'torch.cat([TF.gaussian_blur(x[0][i:i + 1], [7, 7], [s, s]) for i, s in enumerate([0.7, 2.0])])', BLUR),
  c('crossEntropy (plain, label smoothing, sum)', [N([4, 5]), I([4], 0, 5)],
    (x) => [F.crossEntropy(x[0], x[1]), F.crossEntropy(x[0], x[1], { labelSmoothing: 0.1 }), F.crossEntropy(x[0], x[1], { reduction: 'sum' })],
    '[F.cross_entropy(x[0], x[1]), F.cross_entropy(x[0], x[1], label_smoothing=0.1), F.cross_entropy(x[0], x[1], reduction="sum")]', RED),
];

// Boxes [batch, x1, y1, x2, y2] in input pixels (before spatialScale), some partly outside the map.
const ROIS = [0, 4, 4, 40, 36, 1, 0, 0, 63, 63, 0, 10.5, 20.25, 30.75, 28, 1, -6, 50, 20, 70, 0, 33, 7, 34, 60];
const roi: OpCase[] = [];
for (const aligned of [true, false])
  for (const sr of [-1, 2])
    roi.push(c(`roiAlign aligned=${aligned} samplingRatio=${sr} spatialScale=0.25`, [N([2, 3, 16, 16]), V([5, 5], ROIS)],
      (x) => F.roiAlign(x[0], x[1], [7, 7], 0.25, sr, aligned),
      `tv.ops.roi_align(x[0], x[1], output_size=(7, 7), spatial_scale=0.25, sampling_ratio=${sr}, aligned=${aligned ? 'True' : 'False'})`, RED));
roi.push(c('roiAlign rectangular output, spatialScale 1', [N([1, 2, 10, 12]), V([2, 5], [0, 1, 1, 9, 7, 0, 0.5, 2, 11.5, 9])],
  (x) => F.roiAlign(x[0], x[1], [3, 5], 1, 2, true), 'tv.ops.roi_align(x[0], x[1], output_size=(3, 5), spatial_scale=1, sampling_ratio=2, aligned=True)', RED));

// Mixed precision: the same ops under torch.autocast(bfloat16); roi_align follows torchvision's
// autocast rule (float32 inside, the input's dtype out), written out in the reference because
// torchvision's CPU kernel has no bfloat16.
const amp: OpCase[] = [
  c('autocast bfloat16: conv2d, batchNorm, relu, roiAlign, linear, normalize',
    [N([2, 3, 16, 16]), N([4, 3, 3, 3]), V([3, 5], [0, 1, 1, 9, 7, 1, 0.5, 2, 11.5, 9, 0, 0, 0, 15, 15]), N([6, 16]), N([4], false), N([4], false)],
    (x, d) => torch.autocast(d === 'cpu' ? 'cpu' : 'cuda', 'bfloat16', () => {
      const y = F.conv2d(x[0], x[1], null, { padding: 1 });
      const b = F.relu(F.batchNorm(y, null, null, x[4], x[5], true));
      const r = F.roiAlign(b, x[2], [2, 2], 1, 2, true);
      const z = F.linear(r.flatten(1), x[3]);
      return [y, b, r, z, F.normalize(z)];
    }),
    'with torch.autocast(x[0].device.type, dtype=torch.bfloat16):\n' +
    '  y = F.conv2d(x[0], x[1], padding=1)\n  b = F.relu(F.batch_norm(y, None, None, x[4], x[5], True))\n' +
    '  r = tv.ops.roi_align(b.float(), x[2], output_size=(2, 2), spatial_scale=1, sampling_ratio=2, aligned=True).to(b.dtype)\n' +
    '  z = F.linear(r.flatten(1), x[3])\n  return [y, b, r, z, F.normalize(z)]', EXACT, { atol: 1e-2, rtol: 1e-2 }),
];

const foreach: OpCase[] = (() => {
  const L = (x: Tensor[], from: number): Tensor[] => [x[from].clone(), x[from + 1].clone(), x[from + 2].clone()];
  const ins = (): Input[] => [N([3, 4], false), N([5], false), N([2, 2, 2], false), N([3, 4], false), N([5], false), N([2, 2, 2], false), P([3, 4], false), P([5], false), P([2, 2, 2], false)];
  const pyL = 'a = [t.clone() for t in x[0:3]]\n';
  return [
    c('foreachAdd_ (list alpha, scalar, scalar list)', ins(), (x) => {
      const a = L(x, 0); F.foreachAdd_(a, x.slice(3, 6), -0.5);
      const b = L(x, 0); F.foreachAdd_(b, 2);
      const d = L(x, 0); F.foreachAdd_(d, [1, 2, 3]);
      return [...a, ...b, ...d];
    }, pyL + 'torch._foreach_add_(a, x[3:6], alpha=-0.5)\nb = [t.clone() for t in x[0:3]]; torch._foreach_add_(b, 2)\n' +
       'd = [t.clone() for t in x[0:3]]; torch._foreach_add_(d, [1, 2, 3])\nreturn a + b + d'),
    c('foreachSub_, foreachMul_, foreachDiv_', ins(), (x) => {
      const a = L(x, 0); F.foreachSub_(a, x.slice(3, 6), 2);
      const b = L(x, 0); F.foreachMul_(b, x.slice(3, 6));
      const d = L(x, 0); F.foreachMul_(d, 0.9);
      const e = L(x, 0); F.foreachMul_(e, [0.5, -1, 2]);
      const f = L(x, 0); F.foreachDiv_(f, x.slice(6, 9));
      const g = L(x, 0); F.foreachDiv_(g, 4);
      return [...a, ...b, ...d, ...e, ...f, ...g];
    }, 'L = lambda: [t.clone() for t in x[0:3]]\na = L(); torch._foreach_sub_(a, x[3:6], alpha=2)\nb = L(); torch._foreach_mul_(b, x[3:6])\n' +
       'd = L(); torch._foreach_mul_(d, 0.9)\ne = L(); torch._foreach_mul_(e, [0.5, -1, 2])\nf = L(); torch._foreach_div_(f, x[6:9])\n' +
       'g = L(); torch._foreach_div_(g, 4)\nreturn a + b + d + e + f + g'),
    c('foreachMul_ by one-element tensors (LARS trust ratios)', ins(), (x) => {
      const a = L(x, 0);
      F.foreachMul_(a, torch.tensor([0.5, 2, -3], { device: x[0].device }).split(1));
      return a;
    }, 'a = [t.clone() for t in x[0:3]]\ntorch._foreach_mul_(a, list(torch.tensor([0.5, 2, -3]).split(1)))\nreturn a'),
    c('foreachAddcmul_, foreachAddcdiv_', ins(), (x) => {
      const a = L(x, 0); F.foreachAddcmul_(a, x.slice(3, 6), x.slice(6, 9), 0.1);
      const b = L(x, 0); F.foreachAddcdiv_(b, x.slice(3, 6), x.slice(6, 9), -2);
      return [...a, ...b];
    }, 'a = [t.clone() for t in x[0:3]]; torch._foreach_addcmul_(a, x[3:6], x[6:9], value=0.1)\n' +
       'b = [t.clone() for t in x[0:3]]; torch._foreach_addcdiv_(b, x[3:6], x[6:9], value=-2)\nreturn a + b'),
    c('foreachLerp_ (EMA), foreachCopy_, foreachZero_', ins(), (x) => {
      const a = L(x, 0); F.foreachLerp_(a, x.slice(3, 6), 0.01);
      const b = L(x, 0); F.foreachCopy_(b, x.slice(3, 6));
      const d = L(x, 0); F.foreachZero_(d);
      return [...a, ...b, ...d];
    }, 'a = [torch.lerp(t, e, 0.01) for t, e in zip(x[0:3], x[3:6])]\nb = [t.clone() for t in x[3:6]]\nd = [torch.zeros_like(t) for t in x[0:3]]\nreturn a + b + d'),
    c('foreachNorm, foreachSqrt', ins(), (x) => [...F.foreachNorm(x.slice(0, 3)), ...F.foreachNorm(x.slice(0, 3), 1), ...F.foreachSqrt(x.slice(6, 9))],
      'return list(torch._foreach_norm(x[0:3])) + list(torch._foreach_norm(x[0:3], 1)) + list(torch._foreach_sqrt(x[6:9]))', RED),
  ];
})();

const autograd: OpCase[] = [
  c('backward with gradient accumulates over two calls (retainGraph)', [N([3, 4]), N([3, 4]), N([3, 4], false)],
    (x) => { const y = x[0].mul(x[1]).tanh(); y.backward(x[2], true); y.backward(x[2]); return [x[0].grad!, x[1].grad!]; },
    'y = (x[0] * x[1]).tanh(); y.backward(x[2], retain_graph=True); y.backward(x[2])\nreturn [x[0].grad.clone(), x[1].grad.clone()]'),
  c('detach stops the gradient', [N([4]), N([4])], (x) => x[0].detach().mul(x[1]).add(x[0]), 'x[0].detach() * x[1] + x[0]'),
  c('noGrad results do not require grad; enableGrad inside', [N([4]), N([4])],
    (x) => { const a = torch.noGrad(() => x[0].mul(2)); const b = torch.noGrad(() => torch.enableGrad(() => x[1].mul(3))); assert.equal(a.requiresGrad, false); return [a, b]; },
    'with torch.no_grad():\n    a = x[0] * 2\n    with torch.enable_grad():\n        b = x[1] * 3\nreturn [a, b]'),
  c('in-place update of a leaf under noGrad (SGD step), then a new graph', [N([3, 4]), N([3, 4], false), N([3, 4], false)],
    (x) => { const p = x[0]; torch.noGrad(() => p.sub_(x[1].mul(0.1))); assert.ok(p.isLeaf && p.requiresGrad); return p.mul(x[2]); },
    'p = x[0]\nwith torch.no_grad():\n    p.sub_(x[1] * 0.1)\nreturn p * x[2]'),
  c('retainGrad on a non-leaf', [N([3])], (x) => { const y = x[0].mul(2).retainGrad(); y.square().sum().backward(); return y.grad!; },
    'y = x[0] * 2; y.retain_grad(); (y * y).sum().backward()\nreturn y.grad.clone()'),
  c('backward of several outputs (torch.backward)', [N([3]), N([3])],
    (x) => { const a = x[0].mul(x[1]); const b = x[0].exp(); torch.backward([a.sum(), b], [torch.scalarTensor(2, { device: x[0].device }), torch.onesLike(b)]); return x[0].grad!; },
    'a = x[0] * x[1]; b = x[0].exp(); torch.autograd.backward([a.sum(), b], [torch.tensor(2.), torch.ones_like(b)])\nreturn x[0].grad.clone()'),
];

const allCases: OpCase[] = [...creation, ...elementwise, ...inplace, ...comparisons, ...reductions, ...shapes, ...linalg, ...nn, ...roi, ...amp, ...foreach, ...autograd];

// CPU random streams: our CPU generators are LibTorch's mt19937, so seeded draws must equal
// Python's exactly. (CUDA's Philox stream has no CPU reference; see the cuda-only test below.)
const randomCases: OpCase[] = [
  c('manualSeed then rand, randn, randint, randperm', [], () => {
    torch.manualSeed(7);
    return [torch.rand([3, 4]), torch.randn([5]), torch.randint(-3, 9, [6]), torch.randperm(10), torch.rand([2], { dtype: 'float64' })];
  }, 'torch.manual_seed(7)\nreturn [torch.rand(3, 4), torch.randn(5), torch.randint(-3, 9, (6,)), torch.randperm(10), torch.rand(2, dtype=torch.float64)]', EXACT),
  c('Generator streams for rand, randn, randint, randperm', [], () => {
    const g = new torch.Generator(123);
    return [torch.rand([4], { generator: g }), torch.randn([3, 2], { generator: g }), torch.randint(0, 100, [5], { generator: g }), torch.randperm(8, { generator: g })];
  }, 'g = torch.Generator().manual_seed(123)\nreturn [torch.rand(4, generator=g), torch.randn(3, 2, generator=g), torch.randint(0, 100, (5,), generator=g), torch.randperm(8, generator=g)]', EXACT),
  c('uniform_, normal_, bernoulli_ with a generator', [], () => {
    const g = new torch.Generator(99);
    return [torch.empty([6]).uniform_(-2, 3, g), torch.empty([6]).normal_(1, 2, g), torch.empty([10]).bernoulli_(0.3, g)];
  }, 'g = torch.Generator().manual_seed(99)\nreturn [torch.empty(6).uniform_(-2, 3, generator=g), torch.empty(6).normal_(1, 2, generator=g), torch.empty(10).bernoulli_(0.3, generator=g)]', EXACT),
  c('generator state round trip replays the stream', [], () => {
    const g = new torch.Generator(5);
    torch.rand([3], { generator: g });
    const s = g.getState();
    const a = torch.rand([4], { generator: g });
    g.setState(s);
    return [a, torch.rand([4], { generator: g }), s];
  }, 'g = torch.Generator().manual_seed(5)\ntorch.rand(3, generator=g)\ns = g.get_state()\na = torch.rand(4, generator=g)\ng.set_state(s)\nreturn [a, torch.rand(4, generator=g), s]', EXACT),
  c('default generator state (getRngState/setRngState)', [], () => {
    torch.manualSeed(11);
    const s = torch.getRngState();
    const a = torch.randn([3]);
    torch.setRngState(s);
    return [a, torch.randn([3])];
  }, 'torch.manual_seed(11)\ns = torch.get_rng_state()\na = torch.randn(3)\ntorch.set_rng_state(s)\nreturn [a, torch.randn(3)]', EXACT),
];

describe('torch ops against PyTorch', function () {
  this.timeout(300000);
  const cases = [...allCases, ...randomCases];
  let ref: { results: RefResult[]; upstream: (Input | null)[][]; cleanup: () => void };
  const tf32: [torch.BackendFlag, boolean][] = [];

  before(function () {
    // TF32 would make CUDA matmul/conv results differ from float32 by ~1e-3.
    for (const f of ['allowTF32CuBLAS', 'allowTF32CuDNN'] as const) tf32.push([f, torch.backends.set(f, false)]);
    ref = pythonReference(cases, 77);
  });
  after(function () {
    ref?.cleanup();
    for (const [f, v] of tf32) torch.backends.set(f, v);
  });

  for (const device of ['cpu', 'cuda:0']) {
    describeIf(device === 'cpu' ? null : noCuda, device, () => {
      allCases.forEach((oc, i) => {
        it(oc.name, () => checkCase(oc, ref.results[i], ref.upstream[i], device));
      });
    });
  }
  describe('cpu random streams equal PyTorch\'s', () => {
    randomCases.forEach((oc, k) => {
      const i = allCases.length + k;
      it(oc.name, () => checkCase(oc, ref.results[i], ref.upstream[i], 'cpu'));
    });
  });
  describeIf(noCuda, 'cuda random streams', () => {
    it('a seeded cuda Generator replays its stream and draws plausible uniforms', () => {
      torch.tidy(() => {
        const a = torch.rand([100000], { device: 'cuda:0', generator: new torch.Generator(3, 'cuda:0') });
        const b = torch.rand([100000], { device: 'cuda:0', generator: new torch.Generator(3, 'cuda:0') });
        assert.ok(a.equal(b));
        assert.ok(Math.abs(a.mean().item() - 0.5) < 0.01);
        assert.ok(Math.abs(a.var().item() - 1 / 12) < 0.005);
      });
    });
  });
});

describe('torch facade details', () => {
  it('item, toArray, toTypedArray per dtype', () => {
    torch.tidy(() => {
      assert.equal(torch.tensor([2.5]).item(), 2.5);
      assert.equal(torch.tensor([true], { dtype: 'bool' }).item(), 1);
      assert.equal(torch.tensor([7], { dtype: 'int64' }).item(), 7);
      assert.ok(torch.tensor([1, 2], { dtype: 'int64' }).toTypedArray() instanceof BigInt64Array);
      assert.ok(torch.tensor([1, 2], { dtype: 'float16' }).toTypedArray() instanceof Uint16Array);
      // float16 1.0 is 0x3C00, bfloat16 1.0 is 0x3F80.
      assert.deepEqual(Array.from(torch.ones([1], { dtype: 'float16' }).toTypedArray() as Uint16Array), [0x3c00]);
      assert.deepEqual(Array.from(torch.ones([1], { dtype: 'bfloat16' }).toTypedArray() as Uint16Array), [0x3f80]);
      assert.deepEqual(torch.tensor(new Uint16Array([0x3c00, 0xc000]), { dtype: 'float16' }).float().toArray(), [1, -2]);
      assert.deepEqual(torch.tensor([0.5, -3], { dtype: 'bfloat16' }).toArray(), [0.5, -3], 'toArray gives values, not bits');
      const e = torch.empty([2, 3], { dtype: 'int32' });
      assert.deepEqual([e.shape, e.dtype, e.device], [[2, 3], 'int32', 'cpu']);
      assert.deepEqual(torch.tensor(new Uint8Array([0, 2, 255]), { dtype: 'bool' }).toArray(), [0, 1, 1]);
      // A dtype other than the array's converts (PyTorch's torch.tensor(ndarray, dtype=...)).
      const h = torch.tensor(new Float32Array([0.1, 2.5]), { dtype: 'float16' });
      assert.equal(h.dtype, 'float16');
      assert.deepEqual(Array.from(h.toTypedArray() as Uint16Array), [0x2e66, 0x4100]);
      assert.deepEqual(torch.tensor(new Float64Array([1.5, -2]), { dtype: 'int64', shape: [2, 1] }).toArray(), [1, -2]);
      // A view into a larger buffer copies just its window.
      const buf = new Float32Array([9, 1, 2, 3, 9]);
      assert.deepEqual(torch.tensor(buf.subarray(1, 4)).toArray(), [1, 2, 3]);
    });
  });
  it('to() always returns a handle of its own', () => {
    torch.tidy(() => {
      const x = torch.ones([2]).requiresGrad_();
      const y = x.to('cpu');
      assert.notEqual(y, x);
      assert.ok(y.isLeaf && y.requiresGrad, 'same tensor, as PyTorch returns self');
      y.dispose();
      assert.equal(x.sum().item(), 2);
    });
  });
  it('devices and cuda facts', () => {
    assert.equal(torch.cuda.isAvailable(), torch.cuda.deviceCount() > 0);
  });
  it('pinned memory: needs CUDA (a clear error here), pinned copies there', () => {
    torch.tidy(() => {
      const x = torch.ones([4]);
      assert.equal(x.isPinned, false);
      if (torch.cuda.isAvailable()) {
        const p = x.pinMemory();
        assert.equal(p.isPinned, true);
        const onGpu = p.to('cuda:0', undefined, { nonBlocking: true });
        assert.deepEqual(onGpu.toArray(), [1, 1, 1, 1]);
        assert.equal(torch.tensor([1, 2], { pinMemory: true }).isPinned, true);
      } else {
        assert.throws(() => x.pinMemory(), (e: Error) => e instanceof torch.TorchError && e.op === 'pin_memory' && /needs CUDA/.test(e.message));
        assert.throws(() => torch.tensor([1, 2], { pinMemory: true }), /pinned memory needs CUDA/);
        assert.throws(() => torch.zeros([2], { pinMemory: true }), /pinned memory needs CUDA/);
      }
    });
  });
  it('backend flags read back what was set', () => {
    const prev = torch.backends.set('cudnnBenchmark', true);
    assert.equal(torch.backends.get('cudnnBenchmark'), true);
    torch.backends.set('cudnnBenchmark', prev);
    assert.equal(torch.backends.get('cudnnBenchmark'), prev);
  });
  it('full() defaults to float32 (JS numbers do not tell 1 from 1.0)', () => {
    torch.tidy(() => {
      assert.equal(torch.full([2], 1).dtype, 'float32');
      assert.equal(torch.full([2], 1, { dtype: 'int64' }).dtype, 'int64');
      assert.equal(torch.arange(3).dtype, 'int64');
    });
  });
  it('opSchema and callOp for unwrapped ops, in place returning its argument', () => {
    assert.match(torch.opSchema('aten::erf'), /^aten::erf\(Tensor self\) -> Tensor$/);
    torch.tidy(() => {
      const x = torch.tensor([1, 2, 3]);
      assert.equal(torch.callOp('aten::mul_', 'Scalar', x, 2), x);
      assert.deepEqual(x.toArray(), [2, 4, 6]);
      const [vals, idx] = torch.callOp('aten::kthvalue', '', x, 2) as Tensor[];
      assert.equal(vals.item(), 4);
      assert.equal(idx.item(), 1);
    });
  });
});
