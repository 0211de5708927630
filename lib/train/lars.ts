// LARS over SGD with momentum, as the SoCo authors run it (contrast/lars.py wrapping torch.optim.SGD):
//   for tensors with >= 2 dims:  g <- g + wd * w;  g <- g * trust,
//       trust = coef * ||w|| / (||g|| + eps) when ||w|| > 0 and ||g|| > 0, else 1
//   biases and BN parameters (< 2 dims): plain g, no weight decay, no trust ratio
//   then SGD momentum (dampening 0, no Nesterov): buf <- m * buf + g;  w <- w - lr * buf
// Every stage is one multi-tensor (foreach) call over the parameter list, and the trust ratios stay
// on the device: no host synchronisation per step.
import {
  Tensor, foreachAdd_, foreachMul_, foreachNorm, noGrad, ones, stack, tidy, where, zeros, keep,
} from '../torch';

export interface LarsOptions {
  momentum?: number;
  weightDecay?: number;
  /** LARS trust coefficient (eta). */
  trustCoefficient?: number;
  eps?: number;
  /**
   * Which parameters get neither weight decay nor the trust ratio. Default: fewer than 2 dims
   * (biases, BatchNorm weights and biases), as RECIPE.md and the authors' add_weight_decay.
   */
  exclude?: (name: string, param: Tensor) => boolean;
}

export interface LarsState {
  /** Completed optimizer steps. */
  steps: number;
  /** Momentum buffer per parameter name (absent until the parameter first had a gradient). */
  momentum: Record<string, Tensor>;
}

const defaultExclude = (_name: string, p: Tensor): boolean => p.ndim < 2;

export class LARS {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly trustCoefficient: number;
  readonly eps: number;
  private readonly names: string[];
  private readonly params: Tensor[];
  private readonly adapted: boolean[];
  private readonly bufs = new Map<string, Tensor>();
  private steps = 0;

  constructor(params: Iterable<[string, Tensor]>, opts: LarsOptions = {}) {
    this.momentum = opts.momentum ?? 0.9;
    this.weightDecay = opts.weightDecay ?? 1e-5;
    this.trustCoefficient = opts.trustCoefficient ?? 0.001;
    this.eps = opts.eps ?? 1e-8;
    for (const [k, v] of [['momentum', this.momentum], ['weightDecay', this.weightDecay], ['trustCoefficient', this.trustCoefficient], ['eps', this.eps]] as const)
      if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`LARS: ${k} must be a finite number >= 0, got ${v}`);
    const exclude = opts.exclude ?? defaultExclude;
    this.names = [];
    this.params = [];
    this.adapted = [];
    for (const [name, p] of params) {
      if (this.names.includes(name)) throw new TypeError(`LARS: parameter name '${name}' appears twice`);
      this.names.push(name);
      this.params.push(p);
      this.adapted.push(!exclude(name, p));
    }
    if (this.params.length === 0) throw new TypeError('LARS: no parameters to optimise');
  }

  /** Names of the parameters that get weight decay and the trust ratio. */
  get adaptedNames(): string[] { return this.names.filter((_, i) => this.adapted[i]); }
  get stepCount(): number { return this.steps; }

  /** Drops every gradient (set_to_none semantics). */
  zeroGrad(): void {
    for (const p of this.params) p.clearGrad();
  }

  /** The parameters' current gradients (handles onto .grad: in-place ops on them change the gradients). */
  gradients(): Tensor[] {
    return this.params.flatMap((p) => { const g = p.grad; return g ? [g] : []; });
  }

  /** One update at learning rate lr. Parameters without a gradient are skipped, as in PyTorch. */
  step(lr: number): void {
    if (!Number.isFinite(lr)) throw new RangeError(`LARS.step: lr must be finite, got ${lr}`);
    noGrad(() => tidy(() => {
      const idx: number[] = [];
      const grads: Tensor[] = [];
      this.params.forEach((p, i) => {
        const g = p.grad;
        if (g) { idx.push(i); grads.push(g); }
      });
      if (idx.length === 0) return;
      const params = idx.map((i) => this.params[i]);
      const a = idx.map((_, j) => j).filter((j) => this.adapted[idx[j]]);
      if (a.length) {
        const ap = a.map((j) => params[j]);
        // In place on .grad (the authors replace p.grad by the same values): no extra copy.
        const ag = a.map((j) => grads[j]);
        if (this.weightDecay > 0) foreachAdd_(ag, ap, this.weightDecay);
        const pn = stack(foreachNorm(ap));
        const gn = stack(foreachNorm(ag));
        const ratio = pn.mul(this.trustCoefficient).div(gn.add(this.eps));
        const trust = where(pn.gt(0).logicalAnd(gn.gt(0)), ratio, ones(ratio.shape, { dtype: ratio.dtype, device: ratio.device }));
        foreachMul_(ag, trust.split(1));
      }
      const bufs = idx.map((i) => {
        const name = this.names[i];
        let b = this.bufs.get(name);
        if (!b) {
          // Zeros then m*0 + g equals PyTorch's first-step buf = g exactly.
          b = keep(zeros(this.params[i].shape, { dtype: this.params[i].dtype, device: this.params[i].device }));
          this.bufs.set(name, b);
        }
        return b;
      });
      foreachMul_(bufs, this.momentum);
      foreachAdd_(bufs, grads, 1);
      foreachAdd_(params, bufs, -lr);
    }));
    this.steps++;
  }

  /** Momentum buffers by parameter name plus the step count (for checkpoints). Tensors are shared, not copied. */
  stateDict(): LarsState {
    const momentum: Record<string, Tensor> = {};
    for (const [k, v] of this.bufs) momentum[k] = v;
    return { steps: this.steps, momentum };
  }

  /** Restores stateDict() output; copies the tensors onto each parameter's device and dtype. */
  loadStateDict(s: LarsState): void {
    if (!Number.isInteger(s.steps) || s.steps < 0) throw new TypeError(`LARS.loadStateDict: steps must be a non-negative integer, got ${s.steps}`);
    for (const name of Object.keys(s.momentum)) {
      const i = this.names.indexOf(name);
      if (i < 0) throw new TypeError(`LARS.loadStateDict: momentum buffer for unknown parameter '${name}'`);
      const src = s.momentum[name];
      if (src.shape.join() !== this.params[i].shape.join())
        throw new TypeError(`LARS.loadStateDict: momentum buffer '${name}' has shape [${src.shape}], parameter has [${this.params[i].shape}]`);
    }
    this.disposeBuffers();
    noGrad(() => {
      for (const name of Object.keys(s.momentum)) {
        const p = this.params[this.names.indexOf(name)];
        const b = zeros(p.shape, { dtype: p.dtype, device: p.device });
        b.copy_(s.momentum[name]);
        this.bufs.set(name, keep(b));
      }
    });
    this.steps = s.steps;
  }

  private disposeBuffers(): void {
    for (const b of this.bufs.values()) b.dispose();
    this.bufs.clear();
  }

  /** Frees the momentum buffers. */
  dispose(): void { this.disposeBuffers(); }
}
