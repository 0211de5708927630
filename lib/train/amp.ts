// Mixed precision for training: which autocast dtype a run uses, and fp16's dynamic loss scaling
// (torch.cuda.amp.GradScaler's rule) as small pure functions. bf16 has float32's exponent range
// and needs no scaling; fp16 gradients underflow without it.
import { Tensor, foreachMul_, foreachNorm, stack, tidy } from '../torch';
import { Precision } from './config';

/** The autocast dtype of a run, or null for float32. 'auto': bf16 on CUDA, float32 on the CPU. */
export function autocastDtype(precision: Precision, device: string): 'bfloat16' | 'float16' | null {
  const cuda = device.startsWith('cuda');
  switch (precision) {
    case 'auto': return cuda ? 'bfloat16' : null;
    case 'fp32': return null;
    case 'bf16': return 'bfloat16';
    case 'fp16':
      // LibTorch's CPU autocast lists only bfloat16.
      if (!cuda) throw new Error(`--precision fp16 needs a CUDA device (the CPU autocasts to bf16 only); use --precision bf16 or fp32 with --device ${device}`);
      return 'float16';
  }
}

export interface LossScaleOptions {
  initScale: number;
  growthFactor: number;
  backoffFactor: number;
  /** Consecutive steps without inf/NaN gradients before the scale grows. */
  growthInterval: number;
}

/** GradScaler's defaults. */
export const DEFAULT_LOSS_SCALE: LossScaleOptions = { initScale: 2 ** 16, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000 };

/** What a checkpoint keeps of the scaler, so a resumed run continues with the same scale. */
export interface LossScaleState { scale: number; goodSteps: number }

export function initialLossScale(o: LossScaleOptions = DEFAULT_LOSS_SCALE): LossScaleState {
  return { scale: o.initScale, goodSteps: 0 };
}

/** After a step: back off on inf/NaN gradients (the step was skipped), grow after growthInterval clean steps. */
export function updateLossScale(s: LossScaleState, foundInf: boolean, o: LossScaleOptions = DEFAULT_LOSS_SCALE): LossScaleState {
  if (foundInf) return { scale: s.scale * o.backoffFactor, goodSteps: 0 };
  const goodSteps = s.goodSteps + 1;
  return goodSteps === o.growthInterval ? { scale: s.scale * o.growthFactor, goodSteps: 0 } : { scale: s.scale, goodSteps };
}

/**
 * Divides the gradients by the loss scale in place and says whether any is inf or NaN (then the
 * optimizer step must be skipped). One host sync for the whole list.
 */
export function unscaleGradients(grads: Tensor[], scale: number): boolean {
  if (grads.length === 0) return false;
  foreachMul_(grads, 1 / scale);
  return tidy(() => !Number.isFinite(stack(foreachNorm(grads)).sum().item()));
}
