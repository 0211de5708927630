// Harness shared by the torch tests: seeded inputs built here, one Debian-PyTorch process
// (test/reference/ops_ref.py) computing the reference for a whole batch of op cases, and the
// comparison of our outputs and input gradients against it.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { DType, Tensor } from '../lib/torch';
import { PYTHON } from './reference/python';

export { PYTHON };
const SCRIPT = path.resolve(__dirname, '..', '..', 'test', 'reference', 'ops_ref.py');

/** Seeded uniform/normal numbers (mulberry32 + Box-Muller), the same on every run. */
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  uniform(): number {
    let x = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (((x ^ (x >>> 14)) >>> 0) + 0.5) / 4294967296;
  }
  normal(): number { return Math.sqrt(-2 * Math.log(this.uniform())) * Math.cos(2 * Math.PI * this.uniform()); }
}

export type InputDType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';
type Data = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface Input { dtype: InputDType; shape: number[]; data: Data; grad: boolean }

export interface Tol { atol: number; rtol: number }

export interface OpCase {
  name: string;
  inputs: Input[];
  /** Our computation: x holds the inputs on the device under test (leaves, requiring grad as flagged). */
  ours: (x: Tensor[], device: string) => Tensor | Tensor[];
  /** PyTorch's: an expression or a body with `return`, over the list `x` (torch, F, tv, TF in scope). */
  py: string;
  tol: Tol;
  /** Tolerance for input gradients (default: tol). */
  gradTol?: Tol;
}

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

function typed(dtype: InputDType, values: number[]): Data {
  switch (dtype) {
    case 'float32': return Float32Array.from(values);
    case 'float64': return Float64Array.from(values);
    case 'int64': return BigInt64Array.from(values, (v) => BigInt(v));
    case 'int32': return Int32Array.from(values);
    case 'uint8': case 'bool': return Uint8Array.from(values);
  }
}

/** Input factories over one seeded stream, so every run (and every device) sees the same numbers. */
export function inputs(seed: number): {
  N: (shape: number[], grad?: boolean, scale?: number) => Input;
  P: (shape: number[], grad?: boolean) => Input;
  I: (shape: number[], lo: number, hi: number) => Input;
  B: (shape: number[]) => Input;
  V: (shape: number[], values: number[], dtype?: InputDType, grad?: boolean) => Input;
  perm: (n: number) => Input;
} {
  const rng = new Rng(seed);
  return {
    /** normal(0, scale), float32 */
    N: (shape, grad = true, scale = 1) => ({ dtype: 'float32', shape, grad, data: typed('float32', Array.from({ length: numel(shape) }, () => scale * rng.normal())) }),
    /** uniform in [0.5, 2), float32: for log, sqrt, division */
    P: (shape, grad = true) => ({ dtype: 'float32', shape, grad, data: typed('float32', Array.from({ length: numel(shape) }, () => 0.5 + 1.5 * rng.uniform())) }),
    /** int64 uniform in [lo, hi) */
    I: (shape, lo, hi) => ({ dtype: 'int64', shape, grad: false, data: typed('int64', Array.from({ length: numel(shape) }, () => lo + Math.floor(rng.uniform() * (hi - lo)))) }),
    B: (shape) => ({ dtype: 'bool', shape, grad: false, data: typed('bool', Array.from({ length: numel(shape) }, () => (rng.uniform() < 0.5 ? 1 : 0))) }),
    V: (shape, values, dtype = 'float32', grad = false) => {
      assert.equal(values.length, numel(shape), 'V(): value count does not match the shape');
      return { dtype, shape, grad, data: typed(dtype, values) };
    },
    perm: (n) => {
      const p = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng.uniform() * (i + 1));
        [p[i], p[j]] = [p[j], p[i]];
      }
      return { dtype: 'int64', shape: [n], grad: false, data: typed('int64', p) };
    },
  };
}

interface RefTensor { file: string; dtype: string; shape: number[] }
export interface RefResult { outputs?: RefTensor[]; grads?: (RefTensor | null)[]; error?: string; dir: string }
export interface Reference { results: RefResult[]; upstream: (Input | null)[][]; torch: string }

export function makeInputs(x: Input[], device: string): Tensor[] {
  return x.map((s) => torch.tensor(s.data, { shape: s.shape, dtype: s.dtype, device, requiresGrad: s.grad }));
}

function asList(out: Tensor | Tensor[]): Tensor[] { return Array.isArray(out) ? out : [out]; }
const isFloat = (d: string): boolean => d === 'float32' || d === 'float64';

/**
 * Runs every case once on the CPU to learn its output shapes, draws the upstream gradient of each
 * float output from a seeded stream, and has PyTorch compute outputs and input gradients for
 * all cases in one process. The temp dir lives until cleanup().
 */
export function pythonReference(cases: OpCase[], seed: number): Reference & { cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-ops-'));
  const rng = new Rng(seed);
  const write = (name: string, s: Input): object => {
    fs.writeFileSync(path.join(dir, name), new Uint8Array(s.data.buffer, s.data.byteOffset, s.data.byteLength));
    return { file: name, dtype: s.dtype, shape: s.shape, grad: s.grad };
  };
  const upstream: (Input | null)[][] = [];
  const manifest = cases.map((c, i) => {
    const ups = torch.tidy(() => {
      const outs = asList(c.ours(makeInputs(c.inputs, 'cpu'), 'cpu'));
      return outs.map((o) => {
        if (!isFloat(o.dtype)) return null;
        const n = o.numel;
        const vals = Array.from({ length: n }, () => rng.uniform() * 2 - 1);
        return { dtype: o.dtype as InputDType, shape: o.shape, grad: false, data: typed(o.dtype as InputDType, vals) };
      });
    });
    upstream.push(ups);
    return {
      name: c.name,
      py: c.py,
      inputs: c.inputs.map((s, j) => write(`${i}_in${j}.bin`, s)),
      upstream: ups.map((u, k) => (u ? write(`${i}_up${k}.bin`, u) : null)),
    };
  });
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ threads: torch.getNumThreads(), cases: manifest }));
  execFileSync(PYTHON, [SCRIPT, dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  const res = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')) as { torch: string; results: RefResult[] };
  for (const r of res.results) r.dir = dir;
  return { results: res.results, upstream, torch: res.torch, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function readRef(dir: string, r: RefTensor): number[] {
  const buf = fs.readFileSync(path.join(dir, r.file));
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  switch (r.dtype) {
    case 'float32': case 'float16': case 'bfloat16': return Array.from(new Float32Array(ab));
    case 'float64': return Array.from(new Float64Array(ab));
    case 'int64': return Array.from(new BigInt64Array(ab), Number);
    case 'int32': return Array.from(new Int32Array(ab));
    case 'uint8': case 'bool': return Array.from(new Uint8Array(ab));
    default: throw new Error(`reference dtype ${r.dtype} not handled`);
  }
}

function values(t: Tensor): number[] {
  // Half types widen exactly to float32, as the reference writes them.
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') return torch.tidy(() => t.float().toArray());
  return t.toArray();
}

/** allclose-style check: |a - b| <= atol + rtol * |b| everywhere (NaN matches NaN, inf matches itself). */
export function assertClose(ours: number[], ref: number[], tol: Tol, what: string): void {
  assert.equal(ours.length, ref.length, `${what}: ${ours.length} values, reference has ${ref.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const a = ours[i];
    const b = ref[i];
    if (Number.isNaN(b) ? Number.isNaN(a) : a === b) continue;
    const excess = Math.abs(a - b) - (tol.atol + tol.rtol * Math.abs(b));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0)
    assert.fail(`${what}: element ${worst} is ${ours[worst]}, PyTorch gives ${ref[worst]} (atol ${tol.atol}, rtol ${tol.rtol})`);
}

/** Runs one case on `device` (forward, backward with the shared upstream gradients) and compares with PyTorch. */
export function checkCase(c: OpCase, ref: RefResult, upstream: (Input | null)[], device: string): void {
  if (ref.error) assert.fail(`PyTorch failed on '${c.name}':\n${ref.error}`);
  const live = torch.liveTensors();
  torch.tidy(() => {
    const x = makeInputs(c.inputs, device);
    const outs = asList(c.ours(x, device));
    const refOuts = ref.outputs!;
    assert.equal(outs.length, refOuts.length, `${c.name}: ${outs.length} outputs, PyTorch gives ${refOuts.length}`);
    outs.forEach((o, k) => {
      const r = refOuts[k];
      assert.equal(o.device, device === 'cuda' ? 'cuda:0' : device, `${c.name} output ${k} device`);
      assert.equal(o.dtype, r.dtype as DType, `${c.name} output ${k} dtype`);
      assert.deepEqual(o.shape, r.shape, `${c.name} output ${k} shape`);
      assertClose(values(o), readRef(ref.dir, r), c.tol, `${c.name} output ${k}`);
    });
    const pairs = outs.map((o, k) => [o, upstream[k]] as const).filter(([o, u]) => u !== null && o.requiresGrad);
    if (pairs.length)
      torch.backward(pairs.map((p) => p[0]), pairs.map(([, u]) => torch.tensor(u!.data, { shape: u!.shape, dtype: u!.dtype, device })));
    x.forEach((t, j) => {
      if (!c.inputs[j].grad) return;
      const g = t.grad;
      const r = ref.grads![j];
      assert.equal(g === null, r === null, `${c.name}: input ${j} gradient ${g === null ? 'missing' : 'present'}, PyTorch's ${r === null ? 'missing' : 'present'}`);
      if (g && r) {
        assert.deepEqual(g.shape, r.shape, `${c.name} input ${j} gradient shape`);
        assertClose(values(g), readRef(ref.dir, r), c.gradTol ?? c.tol, `${c.name} input ${j} gradient`);
      }
    });
  });
  assert.equal(torch.liveTensors(), live, `${c.name}: tidy left ${torch.liveTensors() - live} tensors behind`);
}

