// Data parallelism without DistributedDataParallel (LibTorch's C++ API has none): rank 0's initial
// state is broadcast to all ranks, and after each backward every gradient is replaced by its
// average over the ranks, computed in buckets whose all-reduces start during backward.
import { Tensor, cat, noGrad, tidy } from '../torch';
import { native } from '../torch/native';
import { Module } from '../nn';
import { ProcessGroup } from './group';

/** DistributedDataParallel's default bucket size. */
export const DEFAULT_BUCKET_MB = 25;

export interface ReduceStats {
  /** Buckets all-reduced this step. */
  buckets: number;
  /** Of those, how many started during backward (the rest started in finish()). */
  overlapped: number;
}

/**
 * Averages gradients over a process group, DDP-style:
 *
 *     reducer.prepare();          // before backward: arm the hooks
 *     loss.backward();            // buckets start their all-reduce as their gradients complete
 *     await reducer.finish();     // the rest start; every .grad is now the average over ranks
 *     optimizer.step();
 *
 * Without prepare(), finish() reduces everything after backward (no overlap, same result). The
 * overlap works through post hooks on the parameters' AccumulateGrad nodes, which LibTorch
 * exposes to C++. Parameters that got no gradient on a rank count as zero there (their average
 * is still written, so every rank steps identically).
 */
export class GradientReducer {
  private handle: unknown;
  /** What the last finish()/finishSync() did (for logs). */
  lastStats: ReduceStats | null = null;
  /** Used by reduceGradientsInStep(): false = reduce after backward only (no hooks). */
  overlap = true;

  constructor(readonly group: ProcessGroup, readonly params: Tensor[], o: { bucketCapMb?: number } = {}) {
    const mb = o.bucketCapMb ?? DEFAULT_BUCKET_MB;
    if (!(mb > 0)) throw new RangeError(`GradientReducer: bucketCapMb must be positive, got ${mb}`);
    this.handle = native.dist.newReducer(group.handle, params.map((p) => p.id), mb * 1024 * 1024);
  }

  /** Parameter indices per bucket, in all-reduce order (reverse parameter order). */
  get buckets(): number[][] { return native.dist.reducerInfo(this.live()); }

  /**
   * Arms the gradient hooks for the next `passes` backward passes (one per step, usually). Give
   * `roots`, the tensors backward will start from (the loss), when some parameters may get no
   * gradient: they are found in the autograd graph and count as ready at once (DDP's
   * find_unused_parameters), so they do not hold back the buckets behind theirs.
   */
  prepare(passes = 1, roots?: Tensor[]): void {
    native.dist.reducerPrepare(this.live(), passes, roots ? roots.map((t) => t.id) : null);
  }

  /** Starts the buckets not yet started, waits for all, writes the averages into .grad. */
  async finish(): Promise<ReduceStats> { return (this.lastStats = await native.dist.reducerFinish(this.live())); }

  /**
   * finish() on the calling thread, for synchronous steps. NCCL: the wait is stream-ordered (no
   * host stall). Gloo: the thread waits for the all-reduce, as a CPU step waits for every op.
   */
  finishSync(): ReduceStats { return (this.lastStats = native.dist.reducerFinishSync(this.live())); }

  /** Removes the hooks. */
  dispose(): void {
    if (this.handle === null) return;
    native.dist.reducerDispose(this.handle);
    this.handle = null;
  }

  private live(): unknown {
    if (this.handle === null) throw new Error('GradientReducer: disposed');
    return this.handle;
  }
}

/** What a training step calls on its optimizer: zeroGrad() before backward, step(lr) after. */
export interface SteppingOptimizer { zeroGrad(): void; step(lr: number): void }

/**
 * Makes a synchronous step of the form zeroGrad(); backward(); step(lr) (lib/train's trainStep)
 * data-parallel without changing it: the optimizer's zeroGrad() also arms the reducer's hooks, and
 * its step(lr) first completes the all-reduce, so it updates with the averaged gradients. Patches
 * and returns `opt` itself.
 */
export function reduceGradientsInStep<T extends SteppingOptimizer>(opt: T, reducer: GradientReducer): T {
  const zeroGrad = opt.zeroGrad.bind(opt);
  const step = opt.step.bind(opt);
  opt.zeroGrad = () => {
    zeroGrad();
    if (reducer.overlap) reducer.prepare();
  };
  opt.step = (lr: number) => {
    reducer.finishSync();
    step(lr);
  };
  return opt;
}

/**
 * Copies rank `src`'s values of `tensors` into every rank's (in place; parameters, buffers, any
 * state), packed into few broadcasts of about bucketCapMb each.
 */
export async function broadcastTensors(group: ProcessGroup, tensors: Tensor[], src = 0, bucketCapMb = DEFAULT_BUCKET_MB): Promise<void> {
  if (group.size === 1 || tensors.length === 0) return;
  const cap = bucketCapMb * 1024 * 1024;
  // Buckets of one dtype and device each, in order.
  const buckets: Tensor[][] = [];
  let cur: Tensor[] = [];
  let bytes = 0;
  for (const t of tensors) {
    const first = cur[0];
    if (first && (first.dtype !== t.dtype || first.device !== t.device || bytes >= cap)) { buckets.push(cur); cur = []; bytes = 0; }
    cur.push(t);
    bytes += t.numel * elementSize(t);
  }
  if (cur.length) buckets.push(cur);
  for (const b of buckets) {
    await tidy(async () => {
      const flat = noGrad(() => cat(b.map((t) => t.detach().reshape(-1))));
      await group.broadcast(flat, src);
      noGrad(() => {
        let off = 0;
        for (const t of b) {
          t.copy_(flat.narrow(0, off, t.numel).view(...t.shape));
          off += t.numel;
        }
      });
    });
  }
}

function elementSize(t: Tensor): number {
  switch (t.dtype) {
    case 'float64': case 'int64': return 8;
    case 'float32': case 'int32': return 4;
    case 'float16': case 'bfloat16': return 2;
    default: return 1;
  }
}

/** Rank src's parameters and buffers (BN running statistics) into every rank's `module`. */
export async function broadcastModule(group: ProcessGroup, module: Module, src = 0): Promise<void> {
  await broadcastTensors(group, [...module.parameters(), ...module.buffers()], src);
}
