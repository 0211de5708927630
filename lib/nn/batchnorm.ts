import { Tensor, batchNorm, ones, zeros } from '../torch';
import { Module } from './module';

export interface BatchNormOptions {
  eps?: number;
  /** Running-stat update factor (PyTorch default 0.1); null = cumulative average over batches. */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

/**
 * Batch normalisation over the channel dim (dim 1), PyTorch's semantics: in training mode it
 * normalises with the batch statistics and updates running_mean / running_var (unbiased variance)
 * with `momentum`, counting batches in num_batches_tracked; in eval mode it uses the running
 * statistics. Parameters weight (gamma, init 1) and bias (beta, init 0), each [C].
 *
 * forward() is the one place statistics are computed: a distributed SyncBatchNorm subclasses this
 * class and overrides forward() (see replaceModules() to swap every instance in a network).
 */
export class BatchNorm extends Module {
  declare readonly weight: Tensor | null;
  declare readonly bias: Tensor | null;
  declare readonly running_mean: Tensor | null;
  declare readonly running_var: Tensor | null;
  declare readonly num_batches_tracked: Tensor | null;
  readonly eps: number;
  readonly momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;

  constructor(readonly numFeatures: number, o: BatchNormOptions = {}) {
    super();
    if (!Number.isInteger(numFeatures) || numFeatures <= 0) throw new TypeError(`${new.target.name}: numFeatures must be a positive integer, got ${numFeatures}`);
    this.eps = o.eps ?? 1e-5;
    this.momentum = o.momentum === undefined ? 0.1 : o.momentum;
    this.affine = o.affine ?? true;
    this.trackRunningStats = o.trackRunningStats ?? true;
    this.registerParameter('weight', this.affine ? ones([numFeatures]) : null);
    this.registerParameter('bias', this.affine ? zeros([numFeatures]) : null);
    this.registerBuffer('running_mean', this.trackRunningStats ? zeros([numFeatures]) : null);
    this.registerBuffer('running_var', this.trackRunningStats ? ones([numFeatures]) : null);
    this.registerBuffer('num_batches_tracked', this.trackRunningStats ? zeros([], { dtype: 'int64' }) : null);
  }

  /** Throws unless x has a rank this layer accepts (BatchNorm1d: 2 or 3, BatchNorm2d: 4). */
  protected checkInput(x: Tensor): void {
    if (x.ndim < 2) throw new TypeError(`${this.constructor.name}.forward: input must be [N, C, ...], got [${x.shape}]`);
  }

  forward(x: Tensor): Tensor {
    this.checkInput(x);
    const s = x.shape;
    if (s[1] !== this.numFeatures)
      throw new TypeError(`${this.constructor.name}.forward: input has ${s[1]} channels, expected ${this.numFeatures} (shape [${s}])`);
    let factor = this.momentum ?? 0;
    if (this.training && this.trackRunningStats && this.num_batches_tracked) {
      this.num_batches_tracked.add_(1);
      if (this.momentum === null) factor = 1 / this.num_batches_tracked.item();
    }
    const useBatchStats = this.training || !this.trackRunningStats;
    // As torch.nn.functional.batch_norm: one value per channel has no variance to normalise by.
    if (useBatchStats && s[0] * s.slice(2).reduce((a, b) => a * b, 1) <= 1)
      throw new RangeError(`${this.constructor.name}.forward: expected more than 1 value per channel when training, got input [${s}]`);
    const track = !this.training || this.trackRunningStats;
    return batchNorm(x, track ? this.running_mean : null, track ? this.running_var : null, this.weight, this.bias,
      useBatchStats, factor, this.eps);
  }
}

/** BatchNorm over [N, C, H, W] (statistics over N, H, W). */
export class BatchNorm2d extends BatchNorm {
  protected override checkInput(x: Tensor): void {
    if (x.ndim !== 4) throw new TypeError(`BatchNorm2d.forward: input must be [N, C, H, W], got [${x.shape}]`);
  }
}

/** BatchNorm over [N, C] or [N, C, L] (statistics over N, or N and L). */
export class BatchNorm1d extends BatchNorm {
  protected override checkInput(x: Tensor): void {
    if (x.ndim !== 2 && x.ndim !== 3) throw new TypeError(`BatchNorm1d.forward: input must be [N, C] or [N, C, L], got [${x.shape}]`);
  }
}
