// The RoI part of SoCo's f^H: pool each box from the feature maps, then the box head. Registered
// as `roi_heads` with child `box_head` so the names are Detectron2's StandardROIHeads'.
import { Tensor, tidy } from '../torch';
import { Module } from '../nn';
import { FastRCNNConvFCHead } from './box_head';
import { NormFactory } from './conv_norm';
import { ROIPooler, ViewSize } from './poolers';

/** What SoCoEncoder needs from a RoI head: box features from feature maps and boxes. */
export interface ROIHeads extends Module {
  readonly pooler: ROIPooler;
  /** Feature size per box. */
  readonly outDim: number;
  /** features (one map per pooler stride), boxes [R, 5], levels [R], the image's [H, W] -> [R, outDim]. */
  forward(features: Tensor[], boxes: Tensor, levels?: Tensor, viewSize?: ViewSize): Tensor;
  /** Every box on every level, the head run separately per level: one [R, outDim] per level. */
  forwardEveryLevel(features: Tensor[], boxes: Tensor, viewSize?: ViewSize): Tensor[];
}

export interface BoxROIHeadsOptions {
  inChannels: number;
  strides: number[];
  /** RoIAlign side (7). */
  resolution?: number;
  /** 'box' = 4conv1fc head (paper); 'pool' = average-pool the RoI, no head (ablation). */
  head: 'box' | 'pool';
  norm?: NormFactory;
  /** RoIAlign scale per map (PoolerOptions.scale). */
  scale?: 'stride' | 'map';
}

/** RoIAlign 7x7 -> FastRCNNConvFCHead ([R, 1024]) or, without a head, spatial mean ([R, C]). */
export class BoxROIHeads extends Module implements ROIHeads {
  declare readonly box_head: FastRCNNConvFCHead | null;
  readonly pooler: ROIPooler;
  readonly outDim: number;

  constructor(o: BoxROIHeadsOptions) {
    super();
    const res = o.resolution ?? 7;
    this.pooler = new ROIPooler({ outputSize: res, strides: o.strides, scale: o.scale });
    const head = o.head === 'box' ? new FastRCNNConvFCHead({ inChannels: o.inChannels, resolution: res, norm: o.norm }) : null;
    this.registerModule('box_head', head);
    this.outDim = head ? head.outDim : o.inChannels;
  }

  private head(pooled: Tensor): Tensor {
    return this.box_head ? this.box_head.forward(pooled) : pooled.mean([2, 3]);
  }

  forward(features: Tensor[], boxes: Tensor, levels?: Tensor, viewSize?: ViewSize): Tensor {
    return tidy(() => this.head(this.pooler.pool(features, boxes, levels, viewSize)));
  }

  forwardEveryLevel(features: Tensor[], boxes: Tensor, viewSize?: ViewSize): Tensor[] {
    return tidy(() => this.pooler.poolEveryLevel(features, boxes, viewSize).map((p) => this.head(p)));
  }
}
