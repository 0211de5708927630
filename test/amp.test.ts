// Mixed-precision helpers: the dtype table and GradScaler's dynamic loss-scale rule, by hand.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
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

  // oneDNN's bf16 weight gradient of a strided, padded convolution over a 1-pixel-wide input reads
  // memory it never wrote (LibTorch 1.13 and 2.11). glibc's MALLOC_PERTURB_ fills every fresh
  // block with 0x7f bytes, so in a child process with it such a read shows as an infinite
  // gradient instead of depending on what the heap held. By hand, for y = conv(x, w) with a 1x1
  // input and sum(y) as the loss: dL/dw is sum_n x[n, c] at the centre tap and exactly 0 at every
  // padding tap, and dL/dx[n, c] is sum_o w[o, c] at the centre tap.
  it('bf16 autocast convolution of a 1-pixel-wide input: exact weight gradients (oneDNN reads unwritten memory there)', () => {
    const child = `
      const torch = require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'torch'))});
      torch.setNumThreads(1);
      torch.manualSeed(0);
      const out = [];
      for (const [k, pad, h, wd] of [[3, 1, 1, 1], [7, 3, 1, 1], [3, 1, 4, 1]]) {
        const w = torch.randn([64, 32, k, k]).requiresGrad_(true);
        const x = torch.randn([2, 32, h, wd]).requiresGrad_(true);
        const y = torch.autocast('cpu', 'bfloat16', () => torch.conv2d(x, w, null, { stride: 2, padding: pad }));
        y.float().sum().backward();
        out.push({ k, h, wd, ydtype: y.dtype, x: x.toArray(), w: w.toArray(), gw: w.grad.toArray(), gx: x.grad.toArray() });
      }
      process.stdout.write(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8', env: { ...process.env, MALLOC_PERTURB_: '128' }, maxBuffer: 1 << 28, timeout: 120000 });
    assert.equal(r.status, 0, r.stderr);
    for (const c of JSON.parse(r.stdout) as { k: number; h: number; wd: number; ydtype: string; x: number[]; w: number[]; gw: number[]; gx: number[] }[]) {
      const name = `${c.k}x${c.k} kernel, ${c.h}x${c.wd} input`;
      assert.equal(c.ydtype, 'bfloat16', `${name}: autocast's output dtype`);
      // Flat row-major: w and gw [O, C, k, k], x and gx [2, C, h, 1]. With stride 2 and padding
      // (k - 1) / 2, output row r reads input row 2r + ky - mid through kernel row ky, and only
      // the kernel's middle column meets the one input column.
      const [O, C, mid] = [64, 32, (c.k - 1) / 2];
      const oh = Math.floor((c.h - 1) / 2) + 1;
      const X = (n: number, ch: number, i: number): number => c.x[(n * C + ch) * c.h + i];
      let worst = 0;
      c.gw.forEach((g, idx) => {
        const kx = idx % c.k, ky = Math.floor(idx / c.k) % c.k, ch = Math.floor(idx / (c.k * c.k)) % C;
        let want = 0;
        if (kx === mid) for (let r = 0; r < oh; r++) { const i = 2 * r + ky - mid; if (i >= 0 && i < c.h) want += X(0, ch, i) + X(1, ch, i); }
        assert.ok(Number.isFinite(g), `${name}: dL/dw[${idx}] = ${g}`);
        worst = Math.max(worst, Math.abs(g - want) / (1 + Math.abs(want)));
      });
      assert.ok(worst <= 1e-5, `${name}: weight gradient off by ${worst}`);
      c.gx.forEach((g, idx) => {
        const i = idx % c.h, ch = Math.floor(idx / c.h) % C;
        let want = 0;
        for (let r = 0; r < oh; r++) {
          const ky = i - 2 * r + mid;
          if (ky >= 0 && ky < c.k) for (let o = 0; o < O; o++) want += c.w[((o * C + ch) * c.k + ky) * c.k + mid];
        }
        assert.ok(Math.abs(g - want) <= 1e-4 * (1 + Math.abs(want)), `${name}: dL/dx[${idx}] = ${g}, by hand ${want}`);
      });
    }
  });
});
