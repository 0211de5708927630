// Memory discipline of the tensor facade: a training loop inside tidy leaves nothing behind
// (live-tensor count exactly flat, RSS flat within a stated bound), and tidy/keep/dispose and the
// GC backstop behave as documented, also across awaits.
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { native } from '../lib/torch/native';
import { collect, gcNow } from './gc';

// RSS bound for the 200-step loop, measured from step 50 (allocator pools, LibTorch's lazily
// built kernels and V8's code are warm by then) to step 200. A leak of one activation map per
// step (8x16x16x16 floats = 128 KiB) would add ~19 MiB over those 150 steps; glibc's arena
// noise on this net is ~1 MiB.
const RSS_BOUND_MIB = 8;

function mib(bytes: number): number { return bytes / (1 << 20); }

interface Net { params: Tensor[]; buffers: Tensor[] }

function makeNet(): Net {
  torch.manualSeed(0);
  const p = (shape: number[], scale: number): Tensor => torch.randn(shape).mul_(scale).requiresGrad_();
  const params = [
    p([8, 3, 3, 3], 0.2), torch.ones([8]).requiresGrad_(), torch.zeros([8]).requiresGrad_(),    // conv1, bn1 weight/bias
    p([16, 8, 3, 3], 0.1), torch.ones([16]).requiresGrad_(), torch.zeros([16]).requiresGrad_(), // conv2, bn2
    p([10, 16], 0.2), torch.zeros([10]).requiresGrad_(),                                       // linear
  ];
  const buffers = [torch.zeros([8]), torch.ones([8]), torch.zeros([16]), torch.ones([16])];
  return { params, buffers };
}

function step(net: Net, x: Tensor, y: Tensor, lr: number): number {
  return torch.tidy(() => {
    const [w1, g1, b1, w2, g2, b2, wl, bl] = net.params;
    const [m1, v1, m2, v2] = net.buffers;
    let h = torch.conv2d(x, w1, null, { padding: 1 });
    h = torch.batchNorm(h, m1, v1, g1, b1, true).relu();
    h = torch.conv2d(h, w2, null, { stride: 2, padding: 1 });
    h = torch.batchNorm(h, m2, v2, g2, b2, true).relu();
    const logits = torch.linear(torch.adaptiveAvgPool2d(h, 1).flatten(1), wl, bl);
    const loss = torch.crossEntropy(logits, y);
    loss.backward();
    torch.noGrad(() => {
      for (const p of net.params) {
        p.sub_(p.grad!, lr);
        p.clearGrad();
      }
    });
    return loss.item();
  });
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('torch memory', function () {
  this.timeout(120000);

  it('200 forward/backward/SGD steps of a conv net inside tidy keep live tensors and RSS flat', () => {
    const net = makeNet();
    const x = torch.randn([8, 3, 16, 16]);
    const y = torch.randint(0, 10, [8]);
    const live0 = torch.liveTensors();
    let rss50 = 0;
    const losses: number[] = [];
    for (let i = 1; i <= 200; i++) {
      losses.push(step(net, x, y, 0.1));
      assert.equal(torch.liveTensors(), live0, `step ${i} left ${torch.liveTensors() - live0} tensors behind`);
      if (i === 50) rss50 = process.memoryUsage().rss;
    }
    const growth = mib(process.memoryUsage().rss - rss50);
    console.log(`      RSS change from step 50 to 200: ${growth.toFixed(2)} MiB; loss ${losses[0].toFixed(3)} -> ${losses[199].toFixed(3)}`);
    assert.ok(growth < RSS_BOUND_MIB, `RSS grew ${growth.toFixed(1)} MiB from step 50 to 200 (bound ${RSS_BOUND_MIB})`);
    // The loop really trained: memorising 8 samples drives the loss down.
    assert.ok(losses.every(Number.isFinite));
    assert.ok(losses[199] < losses[0] * 0.5, `loss ${losses[0]} -> ${losses[199]}`);
    for (const t of [...net.params, ...net.buffers, x, y]) t.dispose();
    assert.equal(torch.liveTensors(), live0 - 14);
  });

  it('tidy frees what it does not return, at any depth of arrays, Maps and objects', () => {
    const live0 = torch.liveTensors();
    const out = torch.tidy(() => {
      const a = torch.ones([2]);
      const b = a.add(1);
      a.mul(3);
      return { list: [b], map: new Map([['k', b.mul(2)]]), n: 1 };
    });
    assert.equal(torch.liveTensors(), live0 + 2);
    assert.deepEqual(out.list[0].toArray(), [2, 2]);
    assert.deepEqual(out.map.get('k')!.toArray(), [4, 4]);
    out.list[0].dispose();
    out.map.get('k')!.dispose();
    assert.equal(torch.liveTensors(), live0);
  });

  it('nested tidy: an inner result belongs to the outer scope; keep() survives every scope', () => {
    const live0 = torch.liveTensors();
    let inner: Tensor | undefined;
    let kept: Tensor | undefined;
    const outer = torch.tidy(() => {
      inner = torch.tidy(() => {
        kept = torch.keep(torch.full([1], 5));
        torch.zeros([3]);
        return torch.ones([3]);
      });
      assert.equal(inner.isDisposed, false, 'returned from the inner scope');
      return inner.sum();
    });
    assert.equal(inner!.isDisposed, true, 'not returned from the outer scope');
    assert.equal(outer.item(), 3);
    assert.equal(kept!.item(), 5);
    outer.dispose();
    kept!.dispose();
    assert.equal(torch.liveTensors(), live0);
  });

  it('tidy frees everything when fn throws; dispose is idempotent; in-place ops return the same tensor', () => {
    const live0 = torch.liveTensors();
    assert.throws(() => torch.tidy(() => { torch.ones([2]); throw new Error('boom'); }), /boom/);
    assert.equal(torch.liveTensors(), live0);
    const x = torch.zeros([2]);
    torch.tidy(() => {
      assert.equal(x.add_(1), x);
      const g = x.mul(2);
      g.dispose();
      g.dispose();
    });
    assert.equal(x.isDisposed, false, 'created outside the scope');
    assert.deepEqual(x.toArray(), [1, 1]);
    x.dispose();
    assert.equal(torch.liveTensors(), live0);
  });

  it('async tidy tracks tensors across awaits and concurrent tasks never free each other\'s', async () => {
    const live0 = torch.liveTensors();
    let aMid: Tensor | undefined;
    const task = async (name: 'a' | 'b', n: number): Promise<Tensor> => torch.tidy(async () => {
      const t = torch.full([n], n);
      await tick();
      const u = t.mul(2);
      if (name === 'a') aMid = u;
      await tick();
      await tick();
      return u.add(1);
    });
    const [ra, rb] = await Promise.all([task('a', 2), task('b', 3)]);
    assert.deepEqual(ra.toArray(), [5, 5]);
    assert.deepEqual(rb.toArray(), [7, 7, 7]);
    assert.equal(aMid!.isDisposed, true, 'intermediate of task a freed when a finished');
    assert.equal(torch.liveTensors(), live0 + 2);
    ra.dispose();
    rb.dispose();
    // A task finishing first does not free a tensor the other task still uses.
    let other: Tensor | undefined;
    const slow = torch.tidy(async () => {
      other = torch.ones([2]);
      await tick();
      await tick();
      await tick();
      return other.sum().item();
    });
    await torch.tidy(async () => { torch.ones([1]); await tick(); });
    assert.equal(other!.isDisposed, false);
    assert.equal(await slow, 2);
    assert.equal(torch.liveTensors(), live0);
  });

  it('gradients read inside tidy are freed with it; the parameter keeps its .grad', () => {
    const p = torch.ones([3]).requiresGrad_();
    const live0 = torch.liveTensors();
    torch.tidy(() => {
      p.mul(2).sum().backward();
      assert.deepEqual(p.grad!.toArray(), [2, 2, 2]);
    });
    assert.equal(torch.liveTensors(), live0);
    const g = p.grad!;
    assert.deepEqual(g.toArray(), [2, 2, 2]);
    g.dispose();
    p.dispose();
  });

  it('the GC backstop frees tensors dropped outside any scope, and V8 sees their memory', async () => {
    const gc = gcNow();
    // (process.memoryUsage().external counts ArrayBuffers only; ask V8 for its adjusted total.)
    const ext0: number = native.externalMemory();
    const big = torch.zeros([16 << 20]);  // 64 MiB
    const ext1: number = native.externalMemory();
    assert.ok(Math.abs(mib(ext1 - ext0) - 64) <= 1, `V8 was told of ${mib(ext1 - ext0).toFixed(1)} MiB for a 64 MiB tensor`);
    const views = Array.from({ length: 8 }, (_, i) => big.narrow(0, i, 1024));
    assert.ok(Math.abs(mib(native.externalMemory() - ext0) - 64) <= 1, 'views of one storage count once');
    big.dispose();
    assert.ok(Math.abs(mib(native.externalMemory() - ext0) - 64) <= 1, 'the storage lives while a view does');
    for (const v of views) v.dispose();
    assert.ok(Math.abs(mib(native.externalMemory() - ext0)) <= 1, 'and of its release on dispose');

    // Earlier tests' dropped wrappers may still be awaiting collection: let them go first, so that
    // only this test's tensors move the count.
    await collect(gc, () => false);
    const live0 = torch.liveTensors();
    (() => { for (let i = 0; i < 1000; i++) torch.ones([4]); })();
    assert.equal(torch.liveTensors(), live0 + 1000);
    await tick();  // the backstop is armed at the end of the job that created them
    await collect(gc, () => torch.liveTensors() <= live0);
    assert.equal(torch.liveTensors(), live0, 'collected wrappers free their handles');
  });
});
