// SoCoModel: the online network (+ predictor) and the EMA target network of SoCo.
//
// INPUT CONTRACT (for the loader and the trainer)
//   A step passes views, each a SoCoView:
//     image   [N, 3, H, W] float, normalised (ImageNet mean/std), on the model's device. Views may
//             differ in size (V1 224, V2 224, V3 112, ...).
//     boxes   [N*K, 5] float, same device: (n, x1, y1, x2, y2), n the image's index in the batch,
//             corners in THIS view's pixels (continuous extents, x2 > x1). Rows are image-major
//             and in proposal order: row n*K + k is proposal k of image n, and row n*K + k of every
//             view is the same object (so box i of V1, V2, V3 correspond). K is the same for all
//             views of a step. On CPU the batch-index column is checked against this layout.
//     levels  optional [N*K] int64, FPN level per box (0 = P2 ... 3 = P5). When absent (the usual
//             case) the model computes it from the box size with the same rule as the loader's
//             views_geometry.fpnLevel: s = sqrt((x2-x1)*(y2-y1)), P2 if s <= 48, P3 if <= 96,
//             P4 if <= 192, else P5 (thresholds: options.levelThresholds). Ignored unless the
//             network has an FPN and scaleAware is on.
//   Views that share the same image Tensor object share one backbone pass (the authors' layout
//   samples separate box sets for V1-V2 and V1-V3 on the same V1: pass V1 twice with each set).
//   RoIAlign maps the view's pixels to each feature map by 1/stride, or with poolerScale 'map' by
//   the map's size over the view's (the authors': a 112 view's P5 is 4x4, so 4/112).
//
// OUTPUT
//   forward(views) -> { online, target }: per view, [N, K, embedDim] tensors in proposal order.
//   online[v] = q(g(h)) with gradients into the online network and predictor; target[v] = g'(h')
//   computed without gradients. The loss pairs online[a] with target[b] (lib/train/loss.ts).
//
// BATCHNORM
//   Every BN uses batch statistics in training mode; each view is a separate batch (backbone per
//   view, head/projector/predictor per view's N*K boxes), as in the authors' code. The target
//   runs in training mode too (authors' code), so its BN running statistics come from its own
//   forward passes. updateTarget() is an EMA of PARAMETERS only and does not touch BN buffers,
//   exactly as the authors' _momentum_update_key_encoder (the paper defines the EMA on weights);
//   the buffers never enter the loss in training mode. The export uses the online network's.
import { Tensor, foreachAdd_, foreachMul_, noGrad, tidy } from '../torch';
import { Module } from '../nn';
import { MLP } from './mlp';
import { SoCoNetwork, SoCoNetworkOptions, resolveNetworkOptions } from './encoder';
import { checkBoxes } from './poolers';

export interface SoCoView {
  image: Tensor;
  boxes: Tensor;
  levels?: Tensor;
}

export interface SoCoOutput {
  /** Per view [N, K, D]: online predictions q(g(h)). */
  online: Tensor[];
  /** Per view [N, K, D]: target projections g'(h'), no gradient. */
  target: Tensor[];
}

export type SoCoModelOptions = SoCoNetworkOptions;

/** Checks the input contract; returns K. Errors name the view and the field. */
export function checkViews(views: SoCoView[], what = 'SoCoModel.forward'): number {
  if (!Array.isArray(views) || views.length === 0) throw new TypeError(`${what}: views must be a non-empty array of { image, boxes, levels? }`);
  let k = -1;
  views.forEach((v, i) => {
    const at = `${what}: views[${i}]`;
    if (!v || !(v.image instanceof Tensor)) throw new TypeError(`${at}.image must be a Tensor`);
    const s = v.image.shape;
    if (s.length !== 4 || s[1] !== 3) throw new TypeError(`${at}.image must be [N, 3, H, W], got [${s}]`);
    checkBoxes(v.boxes, `${at}.boxes`);
    const n = s[0];
    const r = v.boxes.size(0);
    if (r === 0 || r % n !== 0) throw new TypeError(`${at}.boxes must have N*K rows (N = ${n} images), got ${r}`);
    const kv = r / n;
    if (k >= 0 && kv !== k) throw new TypeError(`${at}.boxes has K = ${kv} boxes per image, views[0] has ${k}`);
    k = kv;
    if (v.boxes.device !== v.image.device) throw new TypeError(`${at}.boxes is on ${v.boxes.device}, the image on ${v.image.device}`);
    if (v.levels !== undefined) {
      if (!(v.levels instanceof Tensor) || v.levels.dtype !== 'int64' || v.levels.ndim !== 1 || v.levels.size(0) !== r)
        throw new TypeError(`${at}.levels must be an int64 Tensor [${r}], got ${v.levels instanceof Tensor ? `${v.levels.dtype} [${v.levels.shape}]` : typeof v.levels}`);
    }
    if (v.boxes.device === 'cpu') {
      const b = v.boxes.select(1, 0);
      const idx = b.toArray();
      b.dispose();
      const bad = idx.findIndex((x, row) => x !== Math.floor(row / kv));
      if (bad >= 0) throw new TypeError(`${at}.boxes row ${bad} has batch index ${idx[bad]}, expected ${Math.floor(bad / kv)} (rows are image-major, K = ${kv} per image)`);
    }
  });
  return k;
}

/** Online network + predictor, and the target network updated by EMA. */
export class SoCoModel extends Module {
  declare readonly online: SoCoNetwork;
  declare readonly predictor: MLP;
  declare readonly target: SoCoNetwork;
  readonly options: SoCoModelOptions;

  constructor(options: Partial<SoCoModelOptions> = {}) {
    super();
    this.options = resolveNetworkOptions(options);
    this.registerModule('online', new SoCoNetwork(this.options));
    this.registerModule('predictor', new MLP(this.options.embedDim, this.options.predictorHidden, this.options.embedDim));
    this.registerModule('target', new SoCoNetwork(this.options));
    this.target.requiresGrad_(false);
    this.resetTarget();
  }

  /** Target := online (parameters and buffers), as at the start of training. */
  resetTarget(): void {
    this.target.loadStateDict(this.online.stateDict());
  }

  /** Online embeddings q(g(h)) per view, [N, K, D] each (with gradients). */
  forwardOnline(views: SoCoView[]): Tensor[] {
    const k = checkViews(views, 'SoCoModel.forwardOnline');
    return this.run(this.online, views, k, (z) => this.predictor.forward(z));
  }

  /** Target embeddings g'(h') per view, [N, K, D] each, computed without gradients. */
  forwardTarget(views: SoCoView[]): Tensor[] {
    const k = checkViews(views, 'SoCoModel.forwardTarget');
    return noGrad(() => this.run(this.target, views, k));
  }

  /** Both networks on every view (online first, as the authors' code). */
  forward(views: SoCoView[]): SoCoOutput {
    return { online: this.forwardOnline(views), target: this.forwardTarget(views) };
  }

  private run(net: SoCoNetwork, views: SoCoView[], k: number, then?: (z: Tensor) => Tensor): Tensor[] {
    return tidy(() => {
      const feats = new Map<Tensor, Tensor[]>();
      return views.map((v) => {
        let f = feats.get(v.image);
        if (!f) { f = net.features(v.image); feats.set(v.image, f); }
        const needLevels = net.multiLevel;
        const levels = needLevels ? net.levels(v.boxes, v.levels) : undefined;
        const e = net.embed(f, v.boxes, levels, [v.image.size(2), v.image.size(3)], then);
        return e.view(v.image.size(0), k, e.size(1));
      });
    });
  }

  /**
   * EMA step on parameters: xi <- tau * xi + (1 - tau) * theta (paper Sec. 3.3). BN buffers are
   * left alone (see the header). Two multi-tensor ops for the whole network.
   */
  updateTarget(tau: number): void {
    if (typeof tau !== 'number' || !(tau >= 0 && tau <= 1)) throw new RangeError(`updateTarget: tau must be a number in [0, 1], got ${tau}`);
    const xi = this.target.parameters();
    const theta = this.online.parameters();
    noGrad(() => {
      foreachMul_(xi, tau);
      foreachAdd_(xi, theta, 1 - tau);
    });
  }
}
