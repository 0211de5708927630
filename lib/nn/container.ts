import { Tensor, tidy } from '../torch';
import { Module, TensorModule } from './module';

/** Chains modules: children named '0', '1', ... (PyTorch's nn.Sequential keys). */
export class Sequential extends Module {
  private readonly list: TensorModule[] = [];

  constructor(...modules: TensorModule[]) {
    super();
    for (const m of modules) this.append(m);
  }

  append(m: TensorModule): this {
    this.registerModule(String(this.list.length), m);
    this.list.push(m);
    return this;
  }

  get length(): number { return this.list.length; }

  /** The i-th module as registered now (a swapped child, e.g. SyncBN, is returned). */
  at(i: number): TensorModule {
    if (!Number.isInteger(i) || i < 0 || i >= this.list.length) throw new RangeError(`Sequential.at: index ${i} out of range [0, ${this.list.length})`);
    return (this as unknown as Record<string, TensorModule>)[String(i)];
  }

  /** Runs the children in order; intermediate outputs are freed (autograd keeps what it needs). */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let y = x;
      for (let i = 0; i < this.list.length; i++) y = this.at(i).forward(y);
      return y;
    });
  }
}
