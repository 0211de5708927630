// RoIAlign over one feature map or a pyramid (Detectron2's modeling/poolers.py), with SoCo's
// scale-aware level assignment (paper Sec. 3.3, RECIPE.md "Model").
import { Tensor, cat, roiAlign, tensor, tidy } from '../torch';

/** Paper thresholds on s = sqrt(w*h) in view pixels: P2 if s <= 48, P3 if <= 96, P4 if <= 192, else P5. */
export const PAPER_LEVEL_THRESHOLDS: [number, number, number] = [48, 96, 192];

/** Checks a [R, 5] box tensor (batch index, x1, y1, x2, y2); `what` names the argument in errors. */
export function checkBoxes(boxes: Tensor, what: string): void {
  if (!(boxes instanceof Tensor)) throw new TypeError(`${what} must be a Tensor`);
  const s = boxes.shape;
  if (s.length !== 2 || s[1] !== 5) throw new TypeError(`${what} must be [R, 5] (batch index, x1, y1, x2, y2), got [${s}]`);
  if (boxes.dtype !== 'float32' && boxes.dtype !== 'float64' && boxes.dtype !== 'float16' && boxes.dtype !== 'bfloat16')
    throw new TypeError(`${what} must be a floating tensor, got ${boxes.dtype}`);
}

/**
 * Scale-aware level per box: 0..thresholds.length (0 = P2). s = sqrt(max(w,0) * max(h,0)) with
 * w = x2 - x1, h = y2 - y1 in the view's own pixels (boxes are exact pixel extents), level =
 * number of thresholds t with s > t. Same rule as lib/data/views_geometry.fpnLevel. [R] int64.
 */
export function assignLevels(boxes: Tensor, thresholds: readonly number[] = PAPER_LEVEL_THRESHOLDS): Tensor {
  checkBoxes(boxes, 'assignLevels: boxes');
  for (let i = 1; i < thresholds.length; i++)
    if (!(thresholds[i] > thresholds[i - 1])) throw new RangeError(`assignLevels: thresholds must increase, got [${thresholds}]`);
  return tidy(() => {
    const w = boxes.select(1, 3).sub(boxes.select(1, 1)).clampMin(0);
    const h = boxes.select(1, 4).sub(boxes.select(1, 2)).clampMin(0);
    const s = w.mul(h).sqrt();
    let level = s.gt(thresholds[0]).to(null, 'int64');
    for (let i = 1; i < thresholds.length; i++) level = level.add(s.gt(thresholds[i]).to(null, 'int64'));
    return level;
  });
}

export interface PoolerOptions {
  /** Output side S: 7 for the FPN box head, 14 for the C4 res5 head. */
  outputSize: number;
  /** Stride of each feature map (its spatial scale is 1/stride, as Detectron2). */
  strides: number[];
  /** torchvision semantics: <= 0 = adaptive, ceil(roi_size / S) samples per bin. */
  samplingRatio?: number;
  aligned?: boolean;
  /** Each map's RoIAlign scale: 'stride' = 1/stride (Detectron2; default); 'map' = the map's size
   * over the view's, per axis (the authors' code: a 112 view's P5 map is 4x4, so 4/112, not 1/32).
   * 'map' needs the view's size at every call. */
  scale?: 'stride' | 'map';
}

/** [height, width] of the view the boxes are in (PoolerOptions.scale 'map'). */
export type ViewSize = [number, number];

/**
 * RoIAlign of R boxes: pool() on each box's assigned level -> [R, C, S, S] in box order;
 * poolEveryLevel() on every level -> one [R, C, S, S] per level (the authors' code path).
 */
export class ROIPooler {
  readonly outputSize: number;
  readonly strides: number[];
  readonly samplingRatio: number;
  readonly aligned: boolean;
  readonly scale: 'stride' | 'map';

  constructor(o: PoolerOptions) {
    if (!Number.isInteger(o.outputSize) || o.outputSize <= 0) throw new TypeError(`ROIPooler: outputSize must be a positive integer, got ${o.outputSize}`);
    if (!o.strides.length || o.strides.some((s) => !(s > 0))) throw new TypeError(`ROIPooler: strides must be positive numbers, got [${o.strides}]`);
    this.outputSize = o.outputSize;
    this.strides = o.strides.slice();
    this.samplingRatio = o.samplingRatio ?? -1;
    this.aligned = o.aligned ?? true;
    this.scale = o.scale ?? 'stride';
    if (this.scale !== 'stride' && this.scale !== 'map') throw new TypeError(`ROIPooler: scale must be 'stride' or 'map', got ${String(this.scale)}`);
  }

  private checkFeatures(features: Tensor[]): void {
    if (features.length !== this.strides.length)
      throw new TypeError(`ROIPooler: got ${features.length} feature maps for ${this.strides.length} strides`);
  }

  private one(feature: Tensor, boxes: Tensor, level: number, viewSize?: ViewSize): Tensor {
    if (this.scale === 'stride') return roiAlign(feature, boxes, this.outputSize, 1 / this.strides[level], this.samplingRatio, this.aligned);
    if (!viewSize) throw new TypeError("ROIPooler: scale 'map' needs the size [H, W] of the view the boxes are in");
    const [h, w] = viewSize;
    const [fh, fw] = [feature.size(2), feature.size(3)];
    // x times the map's width over the image's, y the same with heights, then RoIAlign at scale 1.
    return tidy(() => {
      const k = tensor(Float32Array.of(1, fw / w, fh / h, fw / w, fh / h), { device: boxes.device }).to(null, boxes.dtype);
      return roiAlign(feature, boxes.mul(k), this.outputSize, 1, this.samplingRatio, this.aligned);
    });
  }

  /**
   * features: one [N, C, H_l, W_l] per level; boxes [R, 5]; levels [R] int64 in 0..L-1 (ignored
   * with one level); viewSize for scale 'map'. Each level's boxes are pooled in one call; the
   * outputs are concatenated and put back in box order with one gather.
   */
  pool(features: Tensor[], boxes: Tensor, levels?: Tensor, viewSize?: ViewSize): Tensor {
    this.checkFeatures(features);
    checkBoxes(boxes, 'ROIPooler.pool: boxes');
    if (features.length === 1) return this.one(features[0], boxes, 0, viewSize);
    if (!levels) throw new TypeError('ROIPooler.pool: levels are required with more than one feature map');
    const r = boxes.size(0);
    if (levels.ndim !== 1 || levels.size(0) !== r) throw new TypeError(`ROIPooler.pool: levels must be [${r}], got [${levels.shape}]`);
    // The per-level split is decided on the host: one small transfer instead of a nonzero per level.
    const lv = levels.toArray();
    const groups: number[][] = features.map(() => []);
    lv.forEach((l, i) => {
      if (!Number.isInteger(l) || l < 0 || l >= features.length)
        throw new RangeError(`ROIPooler.pool: levels[${i}] = ${l} is not a level in 0..${features.length - 1}`);
      groups[l].push(i);
    });
    return tidy(() => {
      // Every level is pooled, also with no boxes (as Detectron2's ROIPooler): each level's
      // features stay in the autograd graph, so under SyncBN every rank runs the same backward
      // (a level missing on one rank would leave the others waiting in its collective), and an
      // empty level's parameters get a zero gradient, as in the authors' training.
      const used = groups.map((g, l) => [g, l] as const);
      const order = used.flatMap(([g]) => g);
      const dev = boxes.device;
      const idx = (a: number[]): Tensor => tensor(BigInt64Array.from(a, BigInt), { device: dev });
      const outs = used.map(([g, l]) => this.one(features[l], boxes.indexSelect(0, idx(g)), l, viewSize));
      const inverse = new Array<number>(r);
      order.forEach((box, pos) => { inverse[box] = pos; });
      return cat(outs, 0).indexSelect(0, idx(inverse));
    });
  }

  /** Every box on every level: one [R, C, S, S] per feature map. */
  poolEveryLevel(features: Tensor[], boxes: Tensor, viewSize?: ViewSize): Tensor[] {
    this.checkFeatures(features);
    checkBoxes(boxes, 'ROIPooler.poolEveryLevel: boxes');
    return features.map((f, l) => this.one(f, boxes, l, viewSize));
  }
}
