import { Tensor, conv2d, empty } from '../torch';
import { Module } from './module';
import { defaultInit_ } from './init';

type Pair = number | [number, number];

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  /** Learnable bias (default true, as PyTorch). */
  bias?: boolean;
}

/**
 * 2-D convolution. Input [N, C_in, H, W] -> output [N, C_out, H', W'] with
 * H' = floor((H + 2*pad - dilation*(k-1) - 1) / stride) + 1.
 * weight [C_out, C_in/groups, kH, kW], bias [C_out]. PyTorch's default init.
 */
export class Conv2d extends Module {
  declare readonly weight: Tensor;
  declare readonly bias: Tensor | null;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair, o: Conv2dOptions = {}) {
    super();
    const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);
    this.kernelSize = pair(kernelSize);
    this.stride = pair(o.stride ?? 1);
    this.padding = pair(o.padding ?? 0);
    this.dilation = pair(o.dilation ?? 1);
    this.groups = o.groups ?? 1;
    for (const [n, v] of [['inChannels', inChannels], ['outChannels', outChannels], ['groups', this.groups]] as const)
      if (!Number.isInteger(v) || v <= 0) throw new TypeError(`Conv2d: ${n} must be a positive integer, got ${v}`);
    if (inChannels % this.groups || outChannels % this.groups)
      throw new TypeError(`Conv2d: inChannels (${inChannels}) and outChannels (${outChannels}) must be divisible by groups (${this.groups})`);
    this.registerParameter('weight', empty([outChannels, inChannels / this.groups, ...this.kernelSize]));
    this.registerParameter('bias', o.bias ?? true ? empty([outChannels]) : null);
    defaultInit_(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.size(1) !== this.inChannels)
      throw new TypeError(`${this.constructor.name}.forward: input must be [N, ${this.inChannels}, H, W], got [${x.shape}]`);
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }
}
