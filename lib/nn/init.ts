// Weight initialisations (torch.nn.init equivalents), in place and outside autograd. They draw
// from LibTorch's default generator, so torch.manualSeed() makes them reproducible.
import { Tensor, noGrad } from '../torch';

/** fan_in and fan_out of a weight: [out, in, ...kernel] (Linear: [out, in]). */
export function fans(w: Tensor): { fanIn: number; fanOut: number } {
  const s = w.shape;
  if (s.length < 2) throw new TypeError(`fans(): weight must have at least 2 dims, got [${s}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: s[1] * receptive, fanOut: s[0] * receptive };
}

export function uniform_(t: Tensor, a: number, b: number): Tensor { return noGrad(() => t.uniform_(a, b)); }
export function normal_(t: Tensor, mean = 0, std = 1): Tensor { return noGrad(() => t.normal_(mean, std)); }
export function constant_(t: Tensor, v: number): Tensor { return noGrad(() => t.fill_(v)); }
export function zeros_(t: Tensor): Tensor { return noGrad(() => t.zero_()); }
export function ones_(t: Tensor): Tensor { return constant_(t, 1); }

/**
 * He normal init, std = sqrt(2 / fan) for ReLU. mode 'fan_out' with a k x k conv gives
 * normal(0, sqrt(2 / (k*k*C_out))): the ResNet init of RECIPE.md (and of the authors' code).
 */
export function kaimingNormal_(w: Tensor, mode: 'fan_in' | 'fan_out' = 'fan_in'): Tensor {
  const f = fans(w);
  return normal_(w, 0, Math.sqrt(2 / (mode === 'fan_in' ? f.fanIn : f.fanOut)));
}

/**
 * PyTorch's default for Conv2d and Linear (reset_parameters: kaiming_uniform_ with a = sqrt(5)):
 * weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
 */
export function defaultInit_(weight: Tensor, bias: Tensor | null): void {
  const bound = 1 / Math.sqrt(fans(weight).fanIn);
  uniform_(weight, -bound, bound);
  if (bias) uniform_(bias, -bound, bound);
}
