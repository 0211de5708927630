// The SoCo loss against hand-derived values and against PyTorch (test/reference/train_ref.py):
// the paper's Eq. 5-6 on F.cosine_similarity and the authors' regression_loss_bboxs_aware.
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { directedTerm, socoLoss, normalizedEmbeddingStd, ViewPairEmbeddings, LossNormalization } from '../lib/train/loss';
import { pythonReference, randomValues, maxRelDiff } from './reference/train_ref';

interface PairData { onlineA: number[]; targetA: number[]; onlineB: number[]; targetB: number[]; valid: number[] | null }
interface LossCase { normalization: LossNormalization; shape: [number, number, number]; pairs: PairData[] }
interface LossRef { loss: number; pairs: number[]; grads: number[][] }

function makeCase(seed: number, normalization: LossNormalization, shape: [number, number, number], nPairs: number, valid: number[] | null): LossCase {
  const n = shape[0] * shape[1] * shape[2];
  const pairs: PairData[] = [];
  for (let p = 0; p < nPairs; p++) {
    const s = seed + 10 * p;
    pairs.push({ onlineA: randomValues(s, n), targetA: randomValues(s + 1, n), onlineB: randomValues(s + 2, n), targetB: randomValues(s + 3, n), valid });
  }
  return { normalization, shape, pairs };
}

function run(c: LossCase): { loss: number; pairs: number[]; grads: number[][] } {
  return torch.tidy(() => {
    const leaves: Tensor[] = [];
    const pairs: ViewPairEmbeddings[] = c.pairs.map((p, i) => {
      const oa = torch.tensor(Float32Array.from(p.onlineA), { shape: c.shape }).requiresGrad_(true);
      const ob = torch.tensor(Float32Array.from(p.onlineB), { shape: c.shape }).requiresGrad_(true);
      leaves.push(oa, ob);
      return {
        name: `v1-v${i + 2}`, onlineA: oa, onlineB: ob,
        targetA: torch.tensor(Float32Array.from(p.targetA), { shape: c.shape }),
        targetB: torch.tensor(Float32Array.from(p.targetB), { shape: c.shape }),
        valid: p.valid ? torch.tensor(Uint8Array.from(p.valid), { shape: c.shape.slice(0, 2), dtype: 'bool' }) : undefined,
      };
    });
    const out = socoLoss(pairs, c.normalization);
    out.loss.backward();
    return { loss: out.loss.item(), pairs: out.pairs.map((p) => p.value.item()), grads: leaves.map((l) => l.grad!.toArray()) };
  });
}

describe('SoCo loss', () => {
  const mask = [1, 1, 0, 1, /* image 2: nothing valid */ 0, 0, 0, 0, 1, 0, 1, 1];
  const cases: [string, LossCase][] = [
    ['paper, FPN (V1-V2, V1-V3)', makeCase(1, 'paper', [3, 4, 8], 2, null)],
    ['paper, SoCo* (V1-V2, V1-V3, V1-V4)', makeCase(2, 'paper', [2, 4, 16], 3, null)],
    ['paper, with invalid boxes and an image without any', makeCase(3, 'paper', [3, 4, 8], 2, mask)],
    ['authors, FPN', makeCase(4, 'authors', [3, 4, 8], 2, null)],
    ['authors, with invalid boxes and an image without any', makeCase(5, 'authors', [3, 4, 8], 2, mask)],
    ['paper, C4 (V1-V2 only), K=1', makeCase(6, 'paper', [5, 1, 32], 1, null)],
  ];
  let refs: LossRef[];
  before(() => {
    refs = pythonReference<{ loss: LossRef[] }>({ loss: cases.map((c) => c[1]) }).loss;
  });

  cases.forEach(([name, c], i) => {
    it(`equals PyTorch: ${name} (value, per-pair values, gradients)`, () => {
      const live = torch.liveTensors();
      const got = run(c);
      assert.equal(torch.liveTensors(), live, 'the loss leaves no tensor behind');
      const ref = refs[i];
      assert.ok(Math.abs(got.loss - ref.loss) <= 1e-6 * Math.max(1, Math.abs(ref.loss)), `loss ${got.loss} vs ${ref.loss}`);
      assert.ok(maxRelDiff(got.pairs, ref.pairs, 1e-3) < 1e-5, `pairs ${got.pairs} vs ${ref.pairs}`);
      got.grads.forEach((g, j) => assert.ok(maxRelDiff(g, ref.grads[j], 1e-4) < 1e-4, `grad of online input ${j}`));
    });
  });

  it('paper and authors normalisations agree when every box is valid (up to K/(K+1e-6))', () => {
    const a = run(makeCase(7, 'paper', [2, 4, 8], 2, null)).loss;
    const b = run({ ...makeCase(7, 'paper', [2, 4, 8], 2, null), normalization: 'authors' }).loss;
    assert.ok(Math.abs(a * (4 / (4 + 1e-6)) - b) < 1e-6, `${a} vs ${b}`);
  });

  it('hand values: identical embeddings give -8 for two pairs, opposite ones +8, orthogonal ones 0', () => {
    torch.tidy(() => {
      const e = torch.tensor([[[1, 2, 3], [0, -1, 4]]]);
      // View A shows e, view B shows b, each seen by both networks.
      const pair = (b: Tensor): ViewPairEmbeddings => ({ name: 'p', onlineA: e, targetA: e, onlineB: b, targetB: b });
      // Scale does not matter: 3 * e has cosine 1 with e.
      assert.ok(Math.abs(socoLoss([pair(e.mul(3)), pair(e.mul(0.5))]).loss.item() + 8) < 1e-6);
      assert.ok(Math.abs(socoLoss([pair(e.neg()), pair(e.mul(-2))]).loss.item() - 8) < 1e-6);
      const x = torch.tensor([[[1, 0], [0, 2]]]);
      const y = torch.tensor([[[0, 5], [-3, 0]]]);
      assert.ok(Math.abs(socoLoss([{ name: 'p', onlineA: x, targetA: x, onlineB: y, targetB: y }]).loss.item()) < 1e-7);
      // One directed term by hand: cos = [1, 0] for image 0 -> -2 * 0.5 = -1.
      const o = torch.tensor([[[1, 0], [1, 0]]]);
      const t = torch.tensor([[[2, 0], [0, 1]]]);
      assert.ok(Math.abs(directedTerm({ online: o, target: t }).item() + 1) < 1e-7);
      // Same with the second box masked out: only cos = 1 counts -> -2.
      const valid = torch.tensor([[1, 0]], { dtype: 'bool' });
      assert.ok(Math.abs(directedTerm({ online: o, target: t, valid }).item() + 2) < 1e-7);
      // Authors' normalisation divides by (1 + 1e-6).
      assert.ok(Math.abs(directedTerm({ online: o, target: t, valid }, 'authors').item() + 2 / (1 + 1e-6)) < 1e-7);
    });
  });

  it('no gradient reaches the target embeddings', () => {
    torch.tidy(() => {
      const o = torch.tensor(Float32Array.from(randomValues(9, 24)), { shape: [2, 3, 4] }).requiresGrad_(true);
      const t = torch.tensor(Float32Array.from(randomValues(10, 24)), { shape: [2, 3, 4] }).requiresGrad_(true);
      directedTerm({ online: o, target: t }).backward();
      assert.ok(o.grad);
      assert.equal(t.grad, null);
    });
  });

  it('names the wrong argument', () => {
    torch.tidy(() => {
      const a = torch.zeros([2, 4, 8]);
      assert.throws(() => directedTerm({ online: a, target: torch.zeros([2, 3, 8]) }), /online \[2,4,8\] and target \[2,3,8\]/);
      assert.throws(() => directedTerm({ online: torch.zeros([8, 8]), target: torch.zeros([8, 8]) }), /must be \[N, K, D\]/);
      assert.throws(() => directedTerm({ online: a, target: a, valid: torch.zeros([2, 3]) }), /valid mask must be \[2,4\]/);
      assert.throws(() => socoLoss([]), /at least one view pair/);
    });
  });

  it('embedding std: ~0 when collapsed, hand value otherwise', () => {
    torch.tidy(() => {
      assert.ok(normalizedEmbeddingStd(torch.tensor([[1, 2], [2, 4], [3, 6]])) < 1e-6);
      // Rows normalise to (1,0) and (-1,0): per-dim unbiased std sqrt(2) and 0, mean sqrt(2)/2.
      assert.ok(Math.abs(normalizedEmbeddingStd(torch.tensor([[5, 0], [-2, 0]])) - Math.SQRT2 / 2) < 1e-6);
    });
  });
});
