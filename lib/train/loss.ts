// The SoCo loss (paper Eq. 5-6 and the swapped term), as pure tensor functions.
//
// For one ordered pair of views (a online, b target) and image n with proposals i:
//   term(a->b) = mean_n [ (1/K) sum_i -2 cos(v_i^a, v'_i^b) ]
// and the SoCo loss sums both directions of every pair: V1-V2 and V1-V3 (the paper's L + L~),
// plus V1-V4 for SoCo*. With unit cosines the FPN loss reaches -8 (four terms of -2).
//
// Two normalisations (they agree when every box is valid, up to K/(K+1e-6)):
//  - 'paper': cosine_similarity (eps 1e-8 on the norm product); each image averages over its valid
//    boxes, the batch averages over images that have at least one valid box.
//  - 'authors' (hologerry/SoCo regression_loss_bboxs_aware): F.normalize each embedding (eps
//    1e-12), per image sum(cos * valid) / (sum(valid) + 1e-6), then the mean over ALL images, so an
//    image without valid boxes still counts in the denominator.
import { Tensor, cosineSimilarity, normalize, tidy } from '../torch';

export type LossNormalization = 'paper' | 'authors';

export interface DirectedTermInput {
  /** Online predictions q(g(h)) of the boxes in one view: [N, K, D]. */
  online: Tensor;
  /** Target projections g(h) of the same proposals in the other view: [N, K, D]. No gradient flows into it. */
  target: Tensor;
  /** Optional [N, K] mask (bool or float): 1 where the box exists in both views. */
  valid?: Tensor;
}

function checkShapes(t: DirectedTermInput, what: string): void {
  const a = t.online.shape;
  const b = t.target.shape;
  if (a.length !== 3) throw new TypeError(`${what}: online embeddings must be [N, K, D], got [${a}]`);
  if (a.join() !== b.join()) throw new TypeError(`${what}: online [${a}] and target [${b}] embeddings differ in shape`);
  if (t.valid && t.valid.shape.join() !== a.slice(0, 2).join())
    throw new TypeError(`${what}: valid mask must be [${a.slice(0, 2)}], got [${t.valid.shape}]`);
}

/** One directed term: -2 * (mean over images of the per-image mean cosine). A 0-dim tensor. */
export function directedTerm(t: DirectedTermInput, normalization: LossNormalization = 'paper', what = 'directedTerm'): Tensor {
  checkShapes(t, what);
  return tidy(() => {
    const target = t.target.detach();
    let cos: Tensor; // [N, K]
    if (normalization === 'authors') {
      cos = normalize(t.online, 2, 2).mul(normalize(target, 2, 2)).sum(2);
    } else {
      cos = cosineSimilarity(t.online, target, 2, 1e-8);
    }
    if (!t.valid) {
      // Every box valid: both normalisations are the plain mean (authors' differs by K/(K+1e-6)).
      const k = cos.size(1);
      return normalization === 'authors'
        ? cos.sum(1).div(k + 1e-6).mean().mul(-2)
        : cos.mean().mul(-2);
    }
    const valid = t.valid.to(null, cos.dtype);
    const perImageSum = cos.mul(valid).sum(1);
    const count = valid.sum(1);
    if (normalization === 'authors') return perImageSum.div(count.add(1e-6)).mean().mul(-2);
    const has = count.gt(0).to(null, cos.dtype);
    const perImage = perImageSum.div(count.clampMin(1));
    // Images without a valid box are left out of the mean (Eq. 6 is defined per image with K boxes).
    return perImage.mul(has).sum().div(has.sum().clampMin(1)).mul(-2);
  });
}

/** Embeddings of one pair of views (a, b): each view through the online and the target network. */
export interface ViewPairEmbeddings {
  /** Label used in per-term metrics, e.g. 'v1-v2'. */
  name: string;
  onlineA: Tensor; targetA: Tensor;
  onlineB: Tensor; targetB: Tensor;
  /** Optional [N, K] validity of each proposal in both views. */
  valid?: Tensor;
}

export interface SoCoLoss {
  /** Sum over pairs of term(a->b) + term(b->a): the quantity minimised. 0-dim. */
  loss: Tensor;
  /** Each pair's symmetric part, in input order (0-dim tensors), for logging. */
  pairs: { name: string; value: Tensor }[];
}

/** The symmetric SoCo loss over the given view pairs (V1-V2, V1-V3 and, for SoCo*, V1-V4). */
export function socoLoss(pairs: ViewPairEmbeddings[], normalization: LossNormalization = 'paper'): SoCoLoss {
  if (pairs.length === 0) throw new TypeError('socoLoss: needs at least one view pair');
  return tidy(() => {
    const parts = pairs.map((p) => ({
      name: p.name,
      value: directedTerm({ online: p.onlineA, target: p.targetB, valid: p.valid }, normalization, `socoLoss(${p.name})`)
        .add(directedTerm({ online: p.onlineB, target: p.targetA, valid: p.valid }, normalization, `socoLoss(${p.name}, swapped)`)),
    }));
    let loss = parts[0].value;
    for (const p of parts.slice(1)) loss = loss.add(p.value);
    return { loss, pairs: parts };
  });
}

/**
 * Collapse monitor (SimSiam, Sec. 4.1): mean over dimensions of the per-dimension std of the
 * L2-normalised embeddings [M, D]. About 1/sqrt(D) when spread out, ~0 when collapsed.
 */
export function normalizedEmbeddingStd(z: Tensor): number {
  return tidy(() => {
    const flat = z.ndim === 2 ? z : z.reshape(-1, z.size(-1));
    if (flat.size(0) < 2) return NaN;
    return normalize(flat.detach(), 2, 1).std(0).mean().item();
  });
}
