// LARS against the authors' LARS (contrast/lars.py semantics over torch.optim.SGD, run by
// test/reference/train_ref.py on Debian's PyTorch) and against hand-computed single steps.
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { LARS } from '../lib/train/lars';
import { pythonReference, randomValues, maxRelDiff } from './reference/train_ref';

interface ParamSpec { name: string; shape: number[]; data: number[] }
interface LarsCase {
  params: ParamSpec[]; grads: Record<string, number[] | null>[]; lrs: number[];
  momentum: number; weightDecay: number; trustCoefficient: number;
}
interface LarsRef { params: Record<string, number[]>; momentum: Record<string, number[]> }

const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);

function makeCase(): LarsCase {
  const shapes: [string, number[], number][] = [
    ['stem.conv1.weight', [4, 3, 3, 3], 0.2], ['stem.conv1.norm.weight', [4], 1], ['stem.conv1.norm.bias', [4], 0.1],
    ['fc1.weight', [5, 6], 0.3], ['fc1.bias', [5], 0.1], ['zero_init.weight', [3, 3], 0], ['late.weight', [2, 2], 0.5],
  ];
  const params = shapes.map(([name, shape, scale], i) => ({
    name, shape, data: scale === 0 ? new Array(numel(shape)).fill(0) : randomValues(100 + i, numel(shape), scale),
  }));
  const grads = [0, 1, 2].map((step) => {
    const g: Record<string, number[] | null> = {};
    shapes.forEach(([name, shape], i) => {
      // 'late.weight' has no gradient in the first step (skipped by LARS and SGD, as in PyTorch).
      g[name] = name === 'late.weight' && step === 0 ? null : randomValues(1000 * (step + 1) + i, numel(shape), 0.05 * (i + 1));
    });
    return g;
  });
  return { params, grads, lrs: [0.8, 0.5, 0.3], momentum: 0.9, weightDecay: 1e-5, trustCoefficient: 0.001 };
}

function runSteps(c: LarsCase, steps: number, opt?: LARS, params?: Map<string, Tensor>): { opt: LARS; params: Map<string, Tensor> } {
  const ps = params ?? new Map(c.params.map((p) => [p.name, torch.tensor(Float32Array.from(p.data), { shape: p.shape }).requiresGrad_(true)]));
  const o = opt ?? new LARS(ps, { momentum: c.momentum, weightDecay: c.weightDecay, trustCoefficient: c.trustCoefficient });
  for (let s = o.stepCount; s < steps; s++) {
    o.zeroGrad();
    torch.tidy(() => {
      // Real gradients through autograd: d/dp sum(p * g) = g.
      const terms: Tensor[] = [];
      for (const [name, p] of ps) {
        const g = c.grads[s][name];
        if (g) terms.push(p.mul(torch.tensor(Float32Array.from(g), { shape: p.shape })).sum());
      }
      terms.reduce((a, b) => a.add(b)).backward();
    });
    o.step(c.lrs[s]);
  }
  return { opt: o, params: ps };
}

describe('LARS', () => {
  const c = makeCase();
  let ref: LarsRef;
  before(() => { ref = pythonReference<{ lars: LarsRef[] }>({ lars: [c] }).lars[0]; });

  // Same LibTorch on both sides and the same op order, so the result is bit-identical (measured:
  // max difference 0); a different LibTorch build may reduce norms in another order.
  it('three steps equal the authors\' LARS + SGD(momentum 0.9) in PyTorch bit for bit: parameters and momentum buffers', () => {
    const { opt, params } = runSteps(c, 3);
    for (const [name, p] of params) assert.deepEqual(p.toArray(), ref.params[name], name);
    const st = opt.stateDict();
    assert.deepEqual(Object.keys(st.momentum).sort(), Object.keys(ref.momentum).sort());
    for (const name of Object.keys(ref.momentum))
      assert.deepEqual(st.momentum[name].toArray(), ref.momentum[name], `momentum ${name}`);
    assert.equal(st.steps, 3);
    opt.dispose();
    for (const p of params.values()) p.dispose();
  });

  it('adapts only tensors with >= 2 dims', () => {
    const ps = new Map(c.params.map((p) => [p.name, torch.zeros(p.shape)]));
    const opt = new LARS(ps);
    assert.deepEqual(opt.adaptedNames, ['stem.conv1.weight', 'fc1.weight', 'zero_init.weight', 'late.weight']);
    for (const p of ps.values()) p.dispose();
  });

  it('hand values: trust ratio 0.001*||w||/(||g||+eps), weight decay before it, none for biases', () => {
    const w = torch.tensor([[3, 4]]).requiresGrad_(true); // ||w|| = 5
    const b = torch.tensor([1, -1]).requiresGrad_(true);
    const opt = new LARS([['w', w], ['b', b]], { weightDecay: 0.1, momentum: 0.9 });
    torch.tidy(() => w.mul(torch.tensor([[0, 1]])).sum().add(b.mul(torch.tensor([0.5, 0])).sum()).backward());
    opt.step(2);
    // g' = g + 0.1 w = [0.3, 1.4]; trust = 0.001 * 5 / (||g'|| + 1e-8); w -= 2 * trust * g'.
    const gn = Math.hypot(0.3, 1.4);
    const trust = (0.001 * 5) / (gn + 1e-8);
    const expW = [3 - 2 * trust * 0.3, 4 - 2 * trust * 1.4];
    assert.ok(maxRelDiff(w.toArray(), expW) < 1e-6, `${w.toArray()} vs ${expW}`);
    // Bias: plain SGD, no decay: b -= 2 * [0.5, 0].
    assert.ok(maxRelDiff(b.toArray(), [0, -1]) < 1e-7);
    // Second step, same gradients: buf = 0.9 * buf + g.
    opt.zeroGrad();
    torch.tidy(() => b.mul(torch.tensor([0.5, 0])).sum().backward());
    opt.step(1);
    assert.ok(maxRelDiff(b.toArray(), [0 - (0.9 * 0.5 + 0.5), -1]) < 1e-6);
    opt.dispose();
    w.dispose();
    b.dispose();
  });

  it('resuming from stateDict continues bit for bit', () => {
    const straight = runSteps(c, 3);
    const first = runSteps(c, 1);
    // A fresh optimizer over copies of the parameters, loaded from the first run's state.
    const copies = new Map([...first.params].map(([k, v]) => [k, v.detach().clone().requiresGrad_(true)]));
    const resumed = new LARS(copies, { momentum: c.momentum, weightDecay: c.weightDecay, trustCoefficient: c.trustCoefficient });
    resumed.loadStateDict(first.opt.stateDict());
    runSteps(c, 3, resumed, copies);
    for (const [name, p] of straight.params) assert.deepEqual(copies.get(name)!.toArray(), p.toArray(), name);
    for (const r of [straight, first]) { r.opt.dispose(); for (const p of r.params.values()) p.dispose(); }
    resumed.dispose();
    for (const p of copies.values()) p.dispose();
  });

  it('leaves no tensor behind per step', () => {
    // After step 2 every parameter has its momentum buffer; step 3 must not add a tensor.
    const { opt, params } = runSteps(c, 2);
    const live = torch.liveTensors();
    runSteps(c, 3, opt, params);
    assert.equal(torch.liveTensors(), live);
    opt.dispose();
    for (const p of params.values()) p.dispose();
  });

  it('names bad arguments', () => {
    const p = torch.zeros([2, 2]);
    assert.throws(() => new LARS([]), /no parameters/);
    assert.throws(() => new LARS([['a', p], ['a', p]]), /'a' appears twice/);
    assert.throws(() => new LARS([['a', p]], { momentum: -1 }), /momentum must be/);
    const opt = new LARS([['a', p]]);
    assert.throws(() => opt.step(NaN), /lr must be finite/);
    assert.throws(() => opt.loadStateDict({ steps: 1, momentum: { b: p } }), /unknown parameter 'b'/);
    assert.throws(() => opt.loadStateDict({ steps: 1, momentum: { a: torch.zeros([3]) } }), /shape \[3\], parameter has \[2,2\]/);
    p.dispose();
  });
});
