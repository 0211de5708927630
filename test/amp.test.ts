// Mixed-precision helpers: the dtype table and GradScaler's dynamic loss-scale rule, by hand.
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { autocastDtype, initialLossScale, unscaleGradients, updateLossScale } from '../lib/train/amp';

describe('mixed precision', () => {
  it('picks bf16 on CUDA and float32 on the CPU by default; fp16 only on CUDA', () => {
    assert.equal(autocastDtype('auto', 'cuda'), 'bfloat16');
    assert.equal(autocastDtype('auto', 'cuda:1'), 'bfloat16');
    assert.equal(autocastDtype('auto', 'cpu'), null);
    assert.equal(autocastDtype('fp32', 'cuda'), null);
    assert.equal(autocastDtype('bf16', 'cpu'), 'bfloat16');
    assert.equal(autocastDtype('fp16', 'cuda:0'), 'float16');
    assert.throws(() => autocastDtype('fp16', 'cpu'), /--precision fp16 needs a CUDA device/);
  });

  it('loss scale: halves on inf/NaN, doubles after growthInterval clean steps (GradScaler\'s rule)', () => {
    const o = { initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 3 };
    let s = initialLossScale(o);
    const seen: [number, number][] = [];
    for (const inf of [false, false, false, false, true, false, true, true, false, false, false]) {
      s = updateLossScale(s, inf, o);
      seen.push([s.scale, s.goodSteps]);
    }
    // By hand: 3 clean steps -> 2048; one more clean; inf -> 1024, reset; clean; inf, inf -> 256;
    // 3 clean -> 512.
    assert.deepEqual(seen, [[1024, 1], [1024, 2], [2048, 0], [2048, 1], [1024, 0], [1024, 1], [512, 0], [256, 0], [256, 1], [256, 2], [512, 0]]);
    assert.deepEqual(initialLossScale(), { scale: 65536, goodSteps: 0 });
  });

  it('unscales gradients in place and reports inf or NaN among them', () => {
    torch.tidy(() => {
      const a = torch.tensor([1024, -2048]);
      const b = torch.tensor([[512]]);
      assert.equal(unscaleGradients([a, b], 1024), false);
      assert.deepEqual([...a.toArray(), ...b.toArray()], [1, -2, 0.5]);
      assert.equal(unscaleGradients([a, torch.tensor([Infinity])], 2), true);
      assert.equal(unscaleGradients([torch.tensor([NaN, 1])], 2), true);
      assert.equal(unscaleGradients([], 2), false);
    });
  });
});
