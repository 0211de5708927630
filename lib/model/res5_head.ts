// The C4 variant's head (Detectron2's Res5ROIHeads, registered as `roi_heads` with child `res5`):
// RoIAlign 14x14 on C4 (stride 16), the whole res5 stage (stride 2 -> 7x7), global average pool.
import { Tensor, tidy } from '../torch';
import { Module, Sequential } from '../nn';
import { NormFactory, batchNorm2d } from './conv_norm';
import { ROIPooler, ViewSize } from './poolers';
import { ResNetDepth, initResNetNorms, makeStage, stageSpec } from './resnet';
import { ROIHeads } from './roi_heads';

/** C4 features [N, C4, H/16, W/16] and boxes [R, 5] -> [R, C5] (2048 for R50). */
export class Res5ROIHeads extends Module implements ROIHeads {
  declare readonly res5: Sequential;
  readonly pooler: ROIPooler;
  readonly outDim: number;

  constructor(readonly depth: ResNetDepth, resolution = 14, norm: NormFactory = batchNorm2d, scale: 'stride' | 'map' = 'stride') {
    super();
    this.pooler = new ROIPooler({ outputSize: resolution, strides: [16], scale });
    this.registerModule('res5', makeStage(depth, 'res5', norm));
    initResNetNorms(this);
    this.outDim = stageSpec(depth, 'res5').outChannels;
  }

  forward(features: Tensor[], boxes: Tensor, _levels?: Tensor, viewSize?: ViewSize): Tensor {
    return tidy(() => this.res5.forward(this.pooler.pool(features, boxes, undefined, viewSize)).mean([2, 3]));
  }

  forwardEveryLevel(features: Tensor[], boxes: Tensor, viewSize?: ViewSize): Tensor[] {
    return [this.forward(features, boxes, undefined, viewSize)];
  }
}
