// Detectron2's layers.Conv2d: a convolution that owns its normalisation as child `norm`, so the
// parameter names are Detectron2's (`conv1.weight`, `conv1.norm.weight`, ...) and a checkpoint
// is a plain dump. The ReLU that follows is a flag, not a module: it has no parameters.
import { Tensor } from '../torch';
import { BatchNorm, BatchNorm2d, Conv2d, Conv2dOptions } from '../nn';
import { kaimingNormal_, zeros_ } from '../nn/init';

export type NormFactory = (channels: number) => BatchNorm;

/** The default: PyTorch BatchNorm2d (momentum 0.1, eps 1e-5). lib/distributed swaps in SyncBN. */
export const batchNorm2d: NormFactory = (c) => new BatchNorm2d(c);

export interface ConvNormOptions extends Omit<Conv2dOptions, 'bias'> {
  /** A normalisation layer factory; null = none, and then the conv has a bias. */
  norm?: NormFactory | null;
  /** Apply ReLU after the norm. */
  relu?: boolean;
  /**
   * Weight init: 'msra' = normal(0, sqrt(2/(k*k*C_out))), bias 0 (RECIPE.md's ResNet init, also
   * mmcv's ConvModule that the authors' FPN uses); 'default' = PyTorch's nn.Conv2d init (the
   * authors' box head).
   */
  init?: 'msra' | 'default';
}

/**
 * conv -> norm -> (relu). Input [N, C_in, H, W] -> [N, C_out, H', W']. Without a norm the conv has
 * a bias (Detectron2: bias only when norm is empty). Norm: gamma 1, beta 0.
 */
export class ConvNorm extends Conv2d {
  declare readonly norm: BatchNorm | null;
  readonly relu: boolean;

  constructor(inChannels: number, outChannels: number, kernelSize: number, o: ConvNormOptions = {}) {
    const norm = o.norm === undefined ? batchNorm2d : o.norm;
    super(inChannels, outChannels, kernelSize, { ...o, bias: norm === null });
    this.relu = o.relu ?? false;
    if ((o.init ?? 'msra') === 'msra') {
      kaimingNormal_(this.weight, 'fan_out');
      if (this.bias) zeros_(this.bias);
    }
    this.registerModule('norm', norm ? norm(outChannels) : null);
  }

  override forward(x: Tensor): Tensor {
    let y = super.forward(x);
    if (this.norm) y = this.norm.forward(y);
    return this.relu ? y.relu_() : y;
  }
}
