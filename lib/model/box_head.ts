// Detectron2's FastRCNNConvFCHead (modeling/roi_heads/box_head.py) as RECIPE.md's 4conv1fc:
// `conv1..conv4` (3x3, 256, norm, ReLU) and `fc1` (256*7*7 -> 1024, ReLU).
import { Tensor, tidy } from '../torch';
import { Linear, Module } from '../nn';
import { ConvNorm, NormFactory, batchNorm2d } from './conv_norm';

export interface BoxHeadOptions {
  inChannels: number;
  /** RoI side (7). */
  resolution: number;
  convDim?: number;
  numConv?: number;
  fcDim?: number;
  norm?: NormFactory;
}

/** [R, C, S, S] pooled RoIs -> [R, fcDim] box features. Init: PyTorch defaults (the authors' head). */
export class FastRCNNConvFCHead extends Module {
  readonly outDim: number;
  readonly numConv: number;
  declare readonly fc1: Linear;

  constructor(readonly options: BoxHeadOptions) {
    super();
    const o = options;
    const convDim = o.convDim ?? 256;
    this.numConv = o.numConv ?? 4;
    const norm = o.norm ?? batchNorm2d;
    for (let i = 0; i < this.numConv; i++)
      this.registerModule(`conv${i + 1}`, new ConvNorm(i === 0 ? o.inChannels : convDim, convDim, 3, { padding: 1, norm, relu: true, init: 'default' }));
    const flat = (this.numConv ? convDim : o.inChannels) * o.resolution * o.resolution;
    this.outDim = o.fcDim ?? 1024;
    this.registerModule('fc1', new Linear(flat, this.outDim));
  }

  conv(i: number): ConvNorm { return (this as unknown as Record<string, ConvNorm>)[`conv${i + 1}`]; }

  forward(x: Tensor): Tensor {
    const { resolution: s, inChannels: c } = this.options;
    if (x.ndim !== 4 || x.size(1) !== c || x.size(2) !== s || x.size(3) !== s)
      throw new TypeError(`FastRCNNConvFCHead.forward: RoIs must be [R, ${c}, ${s}, ${s}], got [${x.shape}]`);
    return tidy(() => {
      let y = x;
      for (let i = 0; i < this.numConv; i++) y = this.conv(i).forward(y);
      return this.fc1.forward(y.flatten(1)).relu_();
    });
  }
}
