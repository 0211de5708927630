import { Tensor } from '../torch';
import { Module } from './module';

/** max(x, 0), any shape. inplace overwrites the input (as nn.ReLU(inplace=True)). */
export class ReLU extends Module {
  constructor(readonly inplace = false) { super(); }
  forward(x: Tensor): Tensor { return this.inplace ? x.relu_() : x.relu(); }
}

/** Flattens dims startDim..endDim: [N, C, H, W] -> [N, C*H*W] by default. */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) { super(); }
  forward(x: Tensor): Tensor { return x.flatten(this.startDim, this.endDim); }
}
