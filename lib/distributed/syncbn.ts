// Synchronized BatchNorm: batch statistics over the union of every rank's batch, so that N ranks
// x batch B train exactly as one process with batch N*B (the paper trains with SyncBN in every
// sub-network). The autograd function lives in native/dist.cc (forward: all-gather of per-channel
// count/mean/var; backward: all-reduce of the per-channel sums of dy and dy*(x-mean)), because
// its backward must communicate and the addon has no JS-defined autograd functions.
import { Tensor } from '../torch';
import { native } from '../torch/native';
import { w } from '../torch/tensor';
import { BatchNorm, Module, replaceModules } from '../nn';
import { ProcessGroup } from './group';

/**
 * Training-mode batch norm over all ranks of `group` (PyTorch's SyncBatchNorm function): always
 * communicates, also for a group of one. Updates runningMean/runningVar in place with the global
 * mean and unbiased global variance. Argument order as lib/torch's batchNorm.
 */
export function syncBatchNorm(group: ProcessGroup, input: Tensor, runningMean: Tensor | null, runningVar: Tensor | null,
  weight: Tensor | null, bias: Tensor | null, momentum = 0.1, eps = 1e-5): Tensor {
  return w(native.dist.syncBatchNorm(group.handle, input.id, weight?.id ?? null, bias?.id ?? null,
    runningMean?.id ?? null, runningVar?.id ?? null, momentum, eps));
}

/**
 * BatchNorm whose training-mode statistics are synchronized over a process group. As PyTorch's
 * nn.SyncBatchNorm it synchronizes only in training mode with more than one rank; otherwise it is
 * exactly BatchNorm (eval uses the running statistics, which SyncBN keeps equal on all ranks).
 */
export class SyncBatchNorm extends BatchNorm {
  /** null: behave as BatchNorm (single process). */
  group: ProcessGroup | null = null;

  /** A SyncBatchNorm that shares `bn`'s parameter and buffer tensors (optimizer state stays valid). */
  static from(bn: BatchNorm, group: ProcessGroup | null): SyncBatchNorm {
    const s = new SyncBatchNorm(bn.numFeatures, { eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats });
    const members = s as unknown as Record<string, Tensor | null>;
    const source = bn as unknown as Record<string, Tensor | null>;
    for (const name of ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']) {
      const fresh = members[name];
      members[name] = source[name];
      fresh?.dispose();
    }
    s.training = bn.training;
    s.group = group;
    return s;
  }

  protected override checkInput(x: Tensor): void {
    if (x.ndim < 2) throw new TypeError(`SyncBatchNorm.forward: input must be [N, C, ...], got [${x.shape}]`);
  }

  override forward(x: Tensor): Tensor {
    const g = this.group;
    if (!this.training || !g || g.size === 1) return super.forward(x);
    this.checkInput(x);
    if (x.size(1) !== this.numFeatures)
      throw new TypeError(`SyncBatchNorm.forward: input has ${x.size(1)} channels, expected ${this.numFeatures} (shape [${x.shape}])`);
    let factor = this.momentum ?? 0;
    if (this.trackRunningStats && this.num_batches_tracked) {
      this.num_batches_tracked.add_(1);
      if (this.momentum === null) factor = 1 / this.num_batches_tracked.item();
    }
    return syncBatchNorm(g, x, this.running_mean, this.running_var, this.weight, this.bias, factor, this.eps);
  }
}

/**
 * Replaces every BatchNorm under `root` (backbone, FPN, heads, projector, predictor; online and
 * target alike) by a SyncBatchNorm over `group`, sharing its tensors; names and state dicts do
 * not change. Existing SyncBatchNorms are pointed at `group`. Returns how many modules now sync.
 */
export function convertSyncBatchNorm(root: Module, group: ProcessGroup | null): number {
  let n = 0;
  for (const m of root.modules()) if (m instanceof SyncBatchNorm) { m.group = group; n++; }
  n += replaceModules(root, (m) => (m instanceof BatchNorm && !(m instanceof SyncBatchNorm) ? SyncBatchNorm.from(m, group) : undefined));
  return n;
}
