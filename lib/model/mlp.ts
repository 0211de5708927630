// The BYOL-style MLP used as SoCo's projector g and predictor q (paper Sec. 4.1): Linear(in ->
// hidden) -> BatchNorm1d -> ReLU -> Linear(hidden -> out). Names follow the authors' code.
import { Tensor, tidy } from '../torch';
import { BatchNorm1d, Linear, Module } from '../nn';

/** [R, inDim] -> [R, outDim]. PyTorch's default Linear init, BN gamma 1 / beta 0. */
export class MLP extends Module {
  declare readonly linear1: Linear;
  declare readonly bn1: BatchNorm1d;
  declare readonly linear2: Linear;

  constructor(readonly inDim: number, readonly hiddenDim = 4096, readonly outDim = 256) {
    super();
    this.registerModule('linear1', new Linear(inDim, hiddenDim));
    this.registerModule('bn1', new BatchNorm1d(hiddenDim));
    this.registerModule('linear2', new Linear(hiddenDim, outDim));
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 2 || x.size(1) !== this.inDim) throw new TypeError(`MLP.forward: input must be [R, ${this.inDim}], got [${x.shape}]`);
    return tidy(() => this.linear2.forward(this.bn1.forward(this.linear1.forward(x)).relu_()));
  }
}
