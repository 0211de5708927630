// lib/nn against torch.nn (test/reference/soco_ref.py `nn`): Conv2d, Linear and BatchNorm1d/2d
// outputs and gradients, BN running statistics over two training steps then eval (momentum 0.1
// and cumulative), num_batches_tracked, state-dict key order; plus Module bookkeeping, the
// loadStateDict errors, initialisations and module replacement (the SyncBN hook).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import {
  BatchNorm, BatchNorm1d, BatchNorm2d, Conv2d, Linear, Module, ReLU, Sequential, StateDictError, TensorModule, init, replaceModules,
} from '../lib/nn';
import { closeness, python, readBundle, writeBundle } from './reference/soco_ref';

// torch.allclose(rtol, atol), element by element.
const RTOL = 1e-5;
const ATOL = 1e-6;

describe('nn layers vs torch.nn', function () {
  this.timeout(120_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-nn-'));
  let ref: Record<string, Tensor> = {};
  let keys: { state: string[]; params: string[] };
  const inputs: Record<string, Tensor> = {};
  const bnCases: [string, () => BatchNorm, number[]][] = [
    ['bn2d', () => new BatchNorm2d(3), [4, 3, 5, 5]],
    ['bn1d', () => new BatchNorm1d(4), [6, 4]],
    ['bn1d3', () => new BatchNorm1d(4), [6, 4, 3]],
    ['bncum', () => new BatchNorm2d(3, { momentum: null }), [4, 3, 5, 5]],
  ];

  before(() => {
    torch.manualSeed(5);
    const r = (...s: number[]): Tensor => torch.randn(s);
    Object.assign(inputs, {
      'conv.x': r(2, 3, 9, 9), 'conv.weight': r(4, 3, 3, 3), 'conv.bias': r(4), 'conv.g': r(2, 4, 5, 5),
      'linear.x': r(5, 7), 'linear.weight': r(3, 7), 'linear.bias': r(3), 'linear.g': r(5, 3),
    });
    for (const [name, , shape] of bnCases) {
      const c = shape[1];
      Object.assign(inputs, {
        [`${name}.weight`]: torch.rand([c]).add(0.5), [`${name}.bias`]: r(c),
        [`${name}.x1`]: r(...shape).mul(2).add(1), [`${name}.x2`]: r(...shape).sub(0.5), [`${name}.x3`]: r(...shape), [`${name}.g`]: r(...shape),
      });
    }
    writeBundle(path.join(tmp, 'in'), inputs);
    python(['nn', path.join(tmp, 'in'), path.join(tmp, 'out')]);
    ref = readBundle(path.join(tmp, 'out'));
    keys = JSON.parse(fs.readFileSync(path.join(tmp, 'out', 'keys.json'), 'utf8'));
  });
  after(() => {
    for (const t of [...Object.values(ref), ...Object.values(inputs)]) t.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const near = (name: string, a: Tensor, b: Tensor | undefined): void => {
    assert.ok(b, `reference has no ${name}`);
    const e = closeness(a, b, RTOL, ATOL);
    assert.ok(e.worst <= 1, `${name}: an element is ${e.ours} here, ${e.theirs} in PyTorch (${e.worst.toExponential(2)} x the tolerance)`);
  };

  function leafGrads(y: Tensor, g: Tensor, leaves: Record<string, Tensor>, prefix: string): void {
    y.mul(g).sum().backward();
    for (const [n, t] of Object.entries(leaves)) near(`${prefix}.grad.${n}`, t.grad!, ref[`${prefix}.grad.${n}`]);
  }

  it('Conv2d (stride 2, padding 1): output and gradients', () => torch.tidy(() => {
    const conv = new Conv2d(3, 4, 3, { stride: 2, padding: 1 });
    conv.loadStateDict({ weight: inputs['conv.weight'], bias: inputs['conv.bias'] });
    const x = inputs['conv.x'].clone().requiresGrad_();
    const y = conv.forward(x);
    near('conv.y', y, ref['conv.y']);
    leafGrads(y, inputs['conv.g'], { x, weight: conv.weight, bias: conv.bias! }, 'conv');
    assert.throws(() => conv.forward(torch.zeros([1, 2, 5, 5])), /Conv2d\.forward: input must be \[N, 3, H, W\], got \[1,2,5,5\]/);
  }));

  it('Linear: output and gradients', () => torch.tidy(() => {
    const lin = new Linear(7, 3);
    lin.loadStateDict({ weight: inputs['linear.weight'], bias: inputs['linear.bias'] });
    const x = inputs['linear.x'].clone().requiresGrad_();
    const y = lin.forward(x);
    near('linear.y', y, ref['linear.y']);
    leafGrads(y, inputs['linear.g'], { x, weight: lin.weight, bias: lin.bias! }, 'linear');
  }));

  for (const [name, make, shape] of bnCases) {
    it(`${name} ${JSON.stringify(shape)}: train x2 then eval; running stats, num_batches_tracked, gradients`, () => torch.tidy(() => {
      const bn = make();
      bn.loadStateDict({ ...bn.stateDict(), weight: inputs[`${name}.weight`], bias: inputs[`${name}.bias`] });
      bn.train();
      const x1 = inputs[`${name}.x1`].clone().requiresGrad_();
      const y1 = bn.forward(x1);
      near(`${name}.y1`, y1, ref[`${name}.y1`]);
      leafGrads(y1, inputs[`${name}.g`], { x: x1, weight: bn.weight!, bias: bn.bias! }, name);
      bn.forward(inputs[`${name}.x2`]);
      bn.eval();
      near(`${name}.y3`, bn.forward(inputs[`${name}.x3`]), ref[`${name}.y3`]);
      for (const [k, v] of Object.entries(bn.stateDict())) {
        const r = ref[`${name}.state.${k}`];
        if (k === 'num_batches_tracked') assert.deepEqual([v.dtype, v.shape, v.item()], ['int64', [], r.item()]);
        else near(`${name}.state.${k}`, v, r);
      }
      assert.deepEqual(Object.keys(bn.stateDict()), ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    }));
  }

  it('BatchNorm input checks name the layer and the shape', () => {
    const bn = new BatchNorm2d(3);
    assert.throws(() => bn.forward(torch.zeros([2, 3, 4])), /BatchNorm2d\.forward: input must be \[N, C, H, W\], got \[2,3,4\]/);
    assert.throws(() => bn.forward(torch.zeros([2, 4, 3, 3])), /has 4 channels, expected 3/);
    assert.throws(() => new BatchNorm1d(4).forward(torch.zeros([1, 4])), /expected more than 1 value per channel when training/);
    assert.equal(new BatchNorm1d(4).eval().forward(torch.zeros([1, 4])).shape.join(), '1,4');
  });

  it('state-dict keys and parameter names in torch.nn order', () => {
    const seq = new Sequential(new Conv2d(3, 4, 3), new BatchNorm2d(4), new ReLU(), new Sequential(new Linear(2, 2), new BatchNorm1d(2)));
    assert.deepEqual(Object.keys(seq.stateDict()), keys.state);
    assert.deepEqual(seq.namedParameters().map(([n]) => n), keys.params);
  });
});

class Net extends Module {
  declare readonly conv: Conv2d;
  declare readonly norm: BatchNorm2d;
  declare readonly head: Linear | null;
  constructor(head = true) {
    super();
    this.registerModule('conv', new Conv2d(3, 8, 3, { bias: false }));
    this.registerModule('norm', new BatchNorm2d(8));
    this.registerModule('head', head ? new Linear(8, 2) : null);
  }
}

describe('Module', () => {
  it('registers parameters, buffers and children with dotted names; train/eval; counts', () => {
    const n = new Net();
    assert.deepEqual(n.namedParameters().map(([k]) => k), ['conv.weight', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias']);
    assert.deepEqual(n.namedBuffers().map(([k]) => k), ['norm.running_mean', 'norm.running_var', 'norm.num_batches_tracked']);
    assert.equal(n.numParameters(), 8 * 3 * 9 + 16 + 18);
    assert.ok(n.parameters().every((p) => p.requiresGrad));
    assert.ok(n.buffers().every((b) => !b.requiresGrad));
    n.eval();
    assert.ok(n.modules().every((m) => !m.training));
    n.train();
    assert.ok(n.norm.training);
    n.requiresGrad_(false);
    assert.ok(n.parameters().every((p) => !p.requiresGrad));
  });

  it('loadStateDict names every missing, unexpected and mis-shaped key and copies nothing then', () => {
    const a = new Net();
    const b = new Net(false);
    const before = a.conv.weight.clone();
    const sd = { ...b.stateDict(), 'conv.weight': torch.zeros([8, 3, 5, 5]), extra: torch.zeros([1]) };
    let err: StateDictError | undefined;
    try { a.loadStateDict(sd); } catch (e) { err = e as StateDictError; }
    assert.ok(err instanceof StateDictError);
    assert.deepEqual(err.missingKeys, ['head.weight', 'head.bias']);
    assert.deepEqual(err.unexpectedKeys, ['extra']);
    assert.deepEqual(err.mismatched, ['conv.weight (expected [8,3,3,3], got [8,3,5,5])']);
    assert.match(err.message, /missing keys \(2\): head\.weight, head\.bias; unexpected keys \(1\): extra; shape mismatches \(1\)/);
    assert.equal(a.conv.weight.eq(before).all().item(), 1, 'nothing copied');
    // Non-strict: missing/unexpected are returned, a shape mismatch is still an error.
    assert.throws(() => a.loadStateDict(sd, false), /shape mismatches/);
    const r = a.loadStateDict({ ...b.stateDict(), extra: torch.zeros([1]) }, false);
    assert.deepEqual(r, { missingKeys: ['head.weight', 'head.bias'], unexpectedKeys: ['extra'] });
    assert.equal(a.norm.running_var!.eq(b.norm.running_var!).all().item(), 1);
  });

  it('to() converts in place and keeps requires-grad; a registered member cannot be shadowed', () => {
    const n = new Net();
    const w = n.conv.weight;
    n.to('cpu', 'float64');
    assert.equal(n.conv.weight.dtype, 'float64');
    assert.ok(n.conv.weight.requiresGrad && n.conv.weight !== w && w.isDisposed);
    assert.equal(n.norm.num_batches_tracked!.dtype, 'int64', 'integer buffers keep their dtype');
    assert.throws(() => (n as unknown as { registerModule(a: string, b: Module): void }).registerModule('conv.x', new ReLU()), /must be non-empty and contain no '\.'/);
  });

  it('parameters survive the tidy() scope they were created in', () => {
    const n = torch.tidy(() => new Net());
    assert.ok(n.parameters().every((p) => !p.isDisposed));
  });

  it('replaceModules swaps every BatchNorm (the SyncBN hook) keeping names and state', () => {
    class CountingBN extends BatchNorm2d {
      calls = 0;
      override forward(x: Tensor): Tensor { this.calls++; return super.forward(x); }
    }
    const seq = new Sequential(new Conv2d(3, 4, 3) as TensorModule, new BatchNorm2d(4), new Sequential(new BatchNorm2d(4)));
    const keysBefore = Object.keys(seq.stateDict());
    const n = replaceModules(seq, (m) => {
      if (!(m instanceof BatchNorm2d)) return undefined;
      const s = new CountingBN(m.numFeatures);
      s.loadStateDict(m.stateDict());
      return s;
    });
    assert.equal(n, 2);
    assert.deepEqual(Object.keys(seq.stateDict()), keysBefore);
    torch.tidy(() => seq.forward(torch.randn([2, 3, 6, 6])));
    const bns = seq.modules().filter((m): m is CountingBN => m instanceof CountingBN);
    assert.deepEqual(bns.map((b) => b.calls), [1, 1]);
  });
});

describe('initialisations', () => {
  it("PyTorch's Conv2d/Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std = bound/sqrt(3)", () => {
    torch.manualSeed(9);
    const lin = new Linear(400, 1000);
    const bound = 1 / Math.sqrt(400);
    assert.ok(lin.weight.abs().max().item() <= bound);
    const std = lin.weight.std().item();
    assert.ok(Math.abs(std / (bound / Math.sqrt(3)) - 1) < 0.01, `std ${std}`);
  });

  it('kaimingNormal_ fan_out: std sqrt(2/(k*k*C_out))', () => {
    torch.manualSeed(9);
    const w = torch.empty([256, 128, 3, 3]);
    init.kaimingNormal_(w, 'fan_out');
    const std = w.std().item();
    assert.ok(Math.abs(std / Math.sqrt(2 / (9 * 256)) - 1) < 0.01, `std ${std}`);
    assert.ok(Math.abs(w.mean().item()) < 1e-3);
  });
});
