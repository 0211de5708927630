// LR and tau schedules against PyTorch's CosineAnnealingLR driven as the authors' warmup scheduler
// drives it, the authors' tau formula (test/reference/train_ref.py), and hand values.
import { strict as assert } from 'assert';
import { lrAt, tauAt, scaledLr, checkLrSchedule, LrSchedule } from '../lib/train/schedules';
import { pythonReference, maxRelDiff } from './reference/train_ref';

describe('schedules', () => {
  const official: LrSchedule = { peakLr: scaledLr(1.0, 2048), warmupIters: 10, totalIters: 50, warmupStartFactor: 0.01, minLr: 1e-6 };
  const paper: LrSchedule = { peakLr: scaledLr(1.0, 512), warmupIters: 7, totalIters: 33, warmupStartFactor: 0, minLr: 0 };
  const noWarmup: LrSchedule = { peakLr: 0.3, warmupIters: 0, totalIters: 12, warmupStartFactor: 0, minLr: 0 };
  let ref: { lr: number[][]; tau: number[][] };
  before(() => {
    ref = pythonReference({ lr: [official, paper, noWarmup], tau: [{ tau0: 0.99, totalSteps: 40 }, { tau0: 0.98, totalSteps: 7 }] });
  });

  it('lr per iteration equals the authors\' warmup + CosineAnnealingLR in PyTorch (official, paper, no warmup)', () => {
    [official, paper, noWarmup].forEach((s, i) => {
      const got = Array.from({ length: s.totalIters }, (_, it) => lrAt(it, s));
      assert.ok(maxRelDiff(got, ref.lr[i], 1e-9) < 1e-12, `schedule ${i}: ${got} vs ${ref.lr[i]}`);
    });
  });

  it('lr hand values: batch scaling, warmup start and end, half-way cosine, end near zero', () => {
    assert.equal(scaledLr(1.0, 2048), 8);
    assert.equal(scaledLr(1.0, 256), 1);
    assert.equal(lrAt(0, official), 8 / 100);
    assert.equal(lrAt(10, official), 8);
    assert.equal(lrAt(0, paper), 0);
    assert.ok(Math.abs(lrAt(7 + 13, paper) - 1) < 1e-12, 'half-way through the cosine: peak / 2');
    assert.ok(lrAt(32, paper) < 0.01 && lrAt(32, paper) > 0);
    assert.equal(lrAt(50, official), 1e-6);
  });

  it('tau equals the authors\' formula and goes from tau0 to 1', () => {
    const a = Array.from({ length: 41 }, (_, k) => tauAt(k, 0.99, 40));
    const b = Array.from({ length: 8 }, (_, k) => tauAt(k, 0.98, 7));
    assert.ok(maxRelDiff(a, ref.tau[0]) < 1e-15);
    assert.ok(maxRelDiff(b, ref.tau[1]) < 1e-15);
    assert.ok(Math.abs(tauAt(0, 0.99, 40) - 0.99) < 1e-15);
    assert.equal(tauAt(40, 0.99, 40), 1);
    assert.ok(Math.abs(tauAt(20, 0.99, 40) - 0.995) < 1e-15);
  });

  it('names bad arguments', () => {
    assert.throws(() => checkLrSchedule({ ...paper, warmupIters: 40 }), /warmupIters must be an integer in \[0, totalIters=33\]/);
    assert.throws(() => checkLrSchedule({ ...paper, totalIters: 0 }), /totalIters must be a positive integer/);
    assert.throws(() => checkLrSchedule({ ...official, minLr: 100 }), /minLr must be in/);
    assert.throws(() => tauAt(0, 1.5, 10), /tau0 must be in \[0, 1\]/);
    assert.throws(() => scaledLr(1, 0), /globalBatch > 0/);
  });
});
