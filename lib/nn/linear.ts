import { Tensor, empty, linear } from '../torch';
import { Module } from './module';
import { defaultInit_ } from './init';

/** y = x W^T + b. Input [..., inFeatures] -> [..., outFeatures]; weight [out, in], bias [out]. PyTorch's default init. */
export class Linear extends Module {
  declare readonly weight: Tensor;
  declare readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    for (const [n, v] of [['inFeatures', inFeatures], ['outFeatures', outFeatures]] as const)
      if (!Number.isInteger(v) || v <= 0) throw new TypeError(`Linear: ${n} must be a positive integer, got ${v}`);
    this.registerParameter('weight', empty([outFeatures, inFeatures]));
    this.registerParameter('bias', bias ? empty([outFeatures]) : null);
    defaultInit_(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim < 1 || x.size(-1) !== this.inFeatures)
      throw new TypeError(`Linear.forward: input must be [..., ${this.inFeatures}], got [${x.shape}]`);
    return linear(x, this.weight, this.bias);
  }
}
