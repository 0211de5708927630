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
//
// The authors' box pipeline pairs slots by proposal id instead of by row (the two views are padded
// each on its own, so they may repeat different proposals): a [N, K, K] weight matrix C, 1 where
// slot i of a and slot j of b hold the same proposal (idWeights), and per image
// sum_ij cos(v_i^a, v'_j^b) C_ij / sum_ij C_ij with either normalisation. The rows pairing is C = I.
import { Tensor, cosineSimilarity, normalize, tidy } from '../torch';

export type LossNormalization = 'paper' | 'authors';

export interface DirectedTermInput {
  /** Online predictions q(g(h)) of the boxes in one view: [N, K, D]. */
  online: Tensor;
  /** Target projections g(h) of the same proposals in the other view: [N, K, D]. No gradient flows into it. */
  target: Tensor;
  /** Optional [N, K] mask (bool or float): 1 where the box exists in both views. */
  valid?: Tensor;
  /** Optional [N, K, K] weights (bool or float) instead of row pairing: slot i of online with slot
   * j of target, weighted by weights[n, i, j] (idWeights). Not with `valid`. */
  weights?: Tensor;
}

function checkShapes(t: DirectedTermInput, what: string): void {
  const a = t.online.shape;
  const b = t.target.shape;
  if (a.length !== 3) throw new TypeError(`${what}: online embeddings must be [N, K, D], got [${a}]`);
  if (a.join() !== b.join()) throw new TypeError(`${what}: online [${a}] and target [${b}] embeddings differ in shape`);
  if (t.valid && t.valid.shape.join() !== a.slice(0, 2).join())
    throw new TypeError(`${what}: valid mask must be [${a.slice(0, 2)}], got [${t.valid.shape}]`);
  if (t.weights && t.valid) throw new TypeError(`${what}: pass valid (rows paired) or weights (slots paired by id), not both`);
  if (t.weights && t.weights.shape.join() !== [a[0], a[1], a[1]].join())
    throw new TypeError(`${what}: weights must be [${a[0]}, ${a[1]}, ${a[1]}], got [${t.weights.shape}]`);
}

/** [N, K, K] 0/1 float: 1 where slot i of idsA and slot j of idsB ([N, K] int64 each) hold the same
 * proposal id; negative ids (a slot with no FPN level in the authors' rule) match nothing. */
export function idWeights(idsA: Tensor, idsB: Tensor): Tensor {
  if (idsA.ndim !== 2 || idsA.shape.join() !== idsB.shape.join())
    throw new TypeError(`idWeights: ids must be two [N, K] tensors of one shape, got [${idsA.shape}] and [${idsB.shape}]`);
  return tidy(() => {
    const a = idsA.unsqueeze(2);
    const b = idsB.unsqueeze(1);
    return a.eq(b).logicalAnd(a.ge(0)).logicalAnd(b.ge(0)).to(null, 'float32');
  });
}

/** Cosine of every slot of `online` with every slot of `target`: [N, K, K]. */
function pairwiseCosine(online: Tensor, target: Tensor, normalization: LossNormalization): Tensor {
  if (normalization === 'authors') return normalize(online, 2, 2).bmm(normalize(target, 2, 2).transpose(1, 2));
  const [n, k, d] = online.shape;
  return cosineSimilarity(online.unsqueeze(2).expand(n, k, k, d), target.unsqueeze(1).expand(n, k, k, d), 3, 1e-8);
}

/** One directed term: -2 * (mean over images of the per-image mean cosine). A 0-dim tensor. */
export function directedTerm(t: DirectedTermInput, normalization: LossNormalization = 'paper', what = 'directedTerm'): Tensor {
  checkShapes(t, what);
  return tidy(() => {
    const target = t.target.detach();
    if (t.weights) return weightedMean(pairwiseCosine(t.online, target, normalization), t.weights, normalization);
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
    return weightedMean(cos, t.valid, normalization);
  });
}

/** -2 x the mean over images of sum(cos * w) / sum(w) per image, cos and w [N, ...] (dims after
 * the first summed). */
function weightedMean(cos: Tensor, weights: Tensor, normalization: LossNormalization): Tensor {
  return tidy(() => {
    const w = weights.to(null, cos.dtype);
    const dims = Array.from({ length: cos.ndim - 1 }, (_, i) => i + 1);
    const perImageSum = cos.mul(w).sum(dims);
    const count = w.sum(dims);
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
  /** Optional [N, K, K] pairing weights of slot i of a with slot j of b (idWeights); the swapped
   * term uses their transpose. */
  weights?: Tensor;
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
      value: directedTerm({ online: p.onlineA, target: p.targetB, valid: p.valid, weights: p.weights }, normalization, `socoLoss(${p.name})`)
        .add(directedTerm({ online: p.onlineB, target: p.targetA, valid: p.valid, weights: p.weights?.transpose(1, 2) }, normalization, `socoLoss(${p.name}, swapped)`)),
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
