// One SoCo training iteration on a batch of views: both networks forward, the symmetric loss,
// backward, LARS step, target EMA. Everything created inside is freed before it returns.
import { AutocastDtype, Tensor, autocast, tidy } from '../torch';
import { SoCoModel, SoCoView } from '../model';
import { LARS } from './lars';
import { LossNormalization, ViewPairEmbeddings, idWeights, normalizedEmbeddingStd, socoLoss } from './loss';
import { unscaleGradients } from './amp';

/** A loss pair: indices into the step's views (a = the view whose boxes anchor the pair, usually V1).
 * Slot i of a pairs with slot i of b, or, with `ids` ([N, K] int64 per side, the authors' box
 * pipeline), every two slots holding the same proposal id (lib/train/loss.ts idWeights). */
export interface ViewPair { name: string; a: number; b: number; ids?: [Tensor, Tensor] }

/** Standard pairs for views ordered [V1, V2, V3?, V4?]: V1-V2, V1-V3, V1-V4. */
export function anchorPairs(numViews: number): ViewPair[] {
  if (numViews < 2) throw new TypeError(`a SoCo step needs at least two views, got ${numViews}`);
  return Array.from({ length: numViews - 1 }, (_, i) => ({ name: `v1-v${i + 2}`, a: 0, b: i + 1 }));
}

export interface StepResult {
  loss: number;
  pairs: Record<string, number>;
  /** Collapse monitor on the online embeddings of views[0] (computed when asked). */
  embeddingStd: number;
  /** fp16 only: inf/NaN gradients at this loss scale, so the update was skipped (the scale backs off). */
  skipped: boolean;
}

/** Mixed precision of a step: forward and loss under autocast; fp16 also scales the loss. */
export interface StepPrecision {
  deviceType: 'cpu' | 'cuda';
  dtype: AutocastDtype;
  /** fp16's loss scale (lib/train/amp.ts); absent for bf16, which needs none. */
  lossScale?: number;
}

export class NonFiniteLossError extends Error {
  override name = 'NonFiniteLossError';
  constructor(readonly step: number, readonly value: number, readonly lastCheckpoint: string | null) {
    super(`loss is ${value} at iteration ${step + 1}: stopping without applying the update. ` +
      (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}` : 'No checkpoint was written yet') +
      '. Usual causes: lr too high for the batch size (try a lower --base-lr or longer --warmup-epochs), or fp16 overflow (try --precision bf16 or fp32).');
  }
}

export interface StepOptions {
  lr: number;
  /** EMA momentum applied after the update. */
  tau: number;
  normalization: LossNormalization;
  /** Compute the embedding std (costs a little; done on logged steps). */
  measureStd: boolean;
  /** Iteration index, for the error message. */
  step: number;
  lastCheckpoint: string | null;
  /** Data-parallel gradient averaging around backward (lib/distributed's GradientReducer); none in one process. */
  gradientSync?: GradientSync;
  /** Absent: float32. */
  precision?: StepPrecision;
}

/**
 * What a data-parallel step does around backward: beforeBackward(loss) arms the all-reduce hooks
 * (GradientReducer.prepare), afterBackward() waits for the averages (finishSync) before the update.
 */
export interface GradientSync {
  beforeBackward(loss: Tensor): void;
  afterBackward(): void;
}

/**
 * One iteration. Throws NonFiniteLossError, before touching the weights, when the loss is NaN or
 * infinite. The loss is read back (one host sync per step), which that check needs anyway.
 */
export function trainStep(model: SoCoModel, opt: LARS, views: SoCoView[], pairs: ViewPair[], o: StepOptions): StepResult {
  return tidy(() => {
    const forward = (): { loss: Tensor; parts: { name: string; value: Tensor }[]; online0: Tensor } => {
      const out = model.forward(views);
      // The loss in float32 whatever the forward ran in: cosine of low-precision vectors loses the
      // small differences BYOL's gradient lives on.
      const f32 = (t: Tensor): Tensor => t.to(null, 'float32');
      const emb: ViewPairEmbeddings[] = pairs.map((p) => {
        if (!(p.a in out.online) || !(p.b in out.online)) throw new TypeError(`view pair ${p.name} refers to views ${p.a}, ${p.b} of ${views.length}`);
        return {
          name: p.name, onlineA: f32(out.online[p.a]), targetA: f32(out.target[p.a]), onlineB: f32(out.online[p.b]), targetB: f32(out.target[p.b]),
          weights: p.ids ? idWeights(p.ids[0], p.ids[1]) : undefined,
        };
      });
      const { loss, pairs: parts } = socoLoss(emb, o.normalization);
      return { loss, parts, online0: emb[0].onlineA };
    };
    const amp = o.precision;
    const { loss, parts, online0 } = amp ? autocast(amp.deviceType, amp.dtype, forward) : forward();
    const value = loss.item();
    if (!Number.isFinite(value)) throw new NonFiniteLossError(o.step, value, o.lastCheckpoint);
    opt.zeroGrad();
    const scale = amp?.lossScale;
    const root = scale === undefined ? loss : loss.mul(scale);
    o.gradientSync?.beforeBackward(root);
    root.backward();
    o.gradientSync?.afterBackward();
    // fp16: gradients that overflowed at this scale skip the update (GradScaler's rule); the
    // averaged gradients are the same on every rank, so every rank skips together.
    const skipped = scale !== undefined && unscaleGradients(opt.gradients(), scale);
    if (!skipped) {
      opt.step(o.lr);
      model.updateTarget(o.tau);
    }
    const pairValues: Record<string, number> = {};
    for (const p of parts) pairValues[p.name] = p.value.item();
    const embeddingStd = o.measureStd ? normalizedEmbeddingStd(online0) : NaN;
    return { loss: value, pairs: pairValues, embeddingStd, skipped };
  });
}
