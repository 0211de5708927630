// Module: the PyTorch nn.Module model in TypeScript. A module owns named parameters, buffers and
// child modules; names compose with '.' into state-dict keys exactly as in PyTorch, so a state
// dict written here loads there (and the other way) without renaming.
//
// Registered members are reachable as properties (`conv.weight`, `block.conv1`) through accessors
// defined at registration, so a subclass declares them with `declare readonly weight: Tensor` and
// moving a module to another device, or swapping a child (SyncBN), just replaces the registered
// entry: no stale references in fields.
import { Device, DType, Tensor, isFloating, keep, noGrad } from '../torch';

export type StateDict = Record<string, Tensor>;

/** Keys that did not line up in loadStateDict(strict=false). */
export interface LoadResult { missingKeys: string[]; unexpectedKeys: string[] }

/** Raised by loadStateDict; lists every offending key so one run shows the whole mismatch. */
export class StateDictError extends Error {
  override name = 'StateDictError';
  constructor(readonly missingKeys: string[], readonly unexpectedKeys: string[], readonly mismatched: string[]) {
    const parts: string[] = [];
    if (missingKeys.length) parts.push(`missing keys (${missingKeys.length}): ${missingKeys.join(', ')}`);
    if (unexpectedKeys.length) parts.push(`unexpected keys (${unexpectedKeys.length}): ${unexpectedKeys.join(', ')}`);
    if (mismatched.length) parts.push(`shape mismatches (${mismatched.length}): ${mismatched.join(', ')}`);
    super(`loadStateDict: ${parts.join('; ')}`);
  }
}

function checkName(owner: Module, name: string, kind: string): void {
  if (!name || name.includes('.')) throw new TypeError(`${owner.constructor.name}: ${kind} name '${name}' must be non-empty and contain no '.'`);
}

export class Module {
  /** Training mode (batch statistics in BatchNorm); set with train()/eval(). */
  training = true;
  private readonly params_ = new Map<string, Tensor | null>();
  private readonly buffers_ = new Map<string, Tensor | null>();
  private readonly transient_ = new Set<string>();
  private readonly children_ = new Map<string, Module | null>();

  private defineMember(name: string, get: () => unknown, set: (v: any) => void): void {
    if (name in this && !this.params_.has(name) && !this.buffers_.has(name) && !this.children_.has(name))
      throw new TypeError(`${this.constructor.name}: '${name}' is already a property`);
    Object.defineProperty(this, name, { get, set, enumerable: true, configurable: true });
  }

  /**
   * Registers a parameter (a leaf tensor; requires grad unless already set otherwise by the caller
   * passing requiresGrad=false). null registers an absent optional parameter (e.g. bias=false).
   * The tensor survives any enclosing tidy() scope: the module owns it.
   */
  registerParameter(name: string, t: Tensor | null, requiresGrad = true): void {
    checkName(this, name, 'parameter');
    if (this.buffers_.has(name) || this.children_.has(name)) throw new TypeError(`${this.constructor.name}: '${name}' is already registered`);
    if (t) {
      keep(t);
      if (requiresGrad && isFloating(t.dtype)) t.requiresGrad_(true);
    }
    this.params_.set(name, t);
    this.defineMember(name, () => this.params_.get(name), (v: Tensor | null) => this.replace(this.params_, name, v));
  }

  /** Registers a buffer (state that is not trained: running statistics). Persistent buffers go into stateDict(). */
  registerBuffer(name: string, t: Tensor | null, persistent = true): void {
    checkName(this, name, 'buffer');
    if (this.params_.has(name) || this.children_.has(name)) throw new TypeError(`${this.constructor.name}: '${name}' is already registered`);
    if (t) keep(t);
    this.buffers_.set(name, t);
    if (!persistent) this.transient_.add(name);
    this.defineMember(name, () => this.buffers_.get(name), (v: Tensor | null) => this.replace(this.buffers_, name, v));
  }

  /** Registers a child module under `name` (null: an absent optional child, as PyTorch's None); returns it. */
  registerModule<M extends Module | null>(name: string, m: M): M {
    checkName(this, name, 'module');
    if (this.params_.has(name) || this.buffers_.has(name)) throw new TypeError(`${this.constructor.name}: '${name}' is already registered`);
    this.children_.set(name, m);
    this.defineMember(name, () => this.children_.get(name), (v: Module | null) => {
      if (v !== null && !(v instanceof Module)) throw new TypeError(`${this.constructor.name}.${name}: expected a Module or null`);
      this.children_.set(name, v);
    });
    return m;
  }

  private replace(map: Map<string, Tensor | null>, name: string, v: Tensor | null): void {
    if (v !== null && !(v instanceof Tensor)) throw new TypeError(`${this.constructor.name}.${name}: expected a Tensor or null`);
    if (v) keep(v);
    map.set(name, v);
  }

  // ---- traversal (PyTorch's order: own members first, then children depth-first) ----

  *namedChildren(): IterableIterator<[string, Module]> {
    for (const [n, m] of this.children_) if (m) yield [n, m];
  }

  children(): Module[] { return [...this.namedChildren()].map(([, m]) => m); }

  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [n, m] of this.namedChildren()) yield* m.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  modules(): Module[] { return [...this.namedModules()].map(([, m]) => m); }

  /** [name, tensor] of every parameter, each once, with its full dotted name. */
  namedParameters(prefix = '', recurse = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const mods: [string, Module][] = recurse ? [...this.namedModules(prefix)] : [[prefix, this]];
    for (const [mp, m] of mods)
      for (const [n, t] of m.params_) if (t && !seen.has(t)) { seen.add(t); out.push([mp ? `${mp}.${n}` : n, t]); }
    return out;
  }

  parameters(recurse = true): Tensor[] { return this.namedParameters('', recurse).map(([, t]) => t); }

  namedBuffers(prefix = '', recurse = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const mods: [string, Module][] = recurse ? [...this.namedModules(prefix)] : [[prefix, this]];
    for (const [mp, m] of mods) for (const [n, t] of m.buffers_) if (t) out.push([mp ? `${mp}.${n}` : n, t]);
    return out;
  }

  buffers(recurse = true): Tensor[] { return this.namedBuffers('', recurse).map(([, t]) => t); }

  /** Total number of parameter elements. */
  numParameters(): number { return this.parameters().reduce((s, p) => s + p.numel, 0); }

  /** Calls fn on every module (children first, as PyTorch's apply). */
  apply(fn: (m: Module) => void): this {
    for (const c of this.children()) c.apply(fn);
    fn(this);
    return this;
  }

  // ---- modes ----

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  eval(): this { return this.train(false); }

  /** Sets requires_grad on every parameter (false for a network trained by EMA only). */
  requiresGrad_(flag = true): this {
    for (const p of this.parameters()) p.requiresGrad_(flag);
    return this;
  }

  /** Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.clearGrad();
  }

  // ---- state ----

  /**
   * Parameters and persistent buffers by dotted name, in PyTorch's order. The tensors are the
   * module's own (not copies): do not dispose them; clone() one to snapshot it.
   */
  stateDict(prefix = ''): StateDict {
    const out: StateDict = {};
    const walk = (m: Module, p: string): void => {
      for (const [n, t] of m.params_) if (t) out[p + n] = t;
      for (const [n, t] of m.buffers_) if (t && !m.transient_.has(n)) out[p + n] = t;
      for (const [n, c] of m.namedChildren()) walk(c, `${p}${n}.`);
    };
    walk(this, prefix);
    return out;
  }

  /**
   * Copies values from `sd` (a record or Map of name -> tensor) into this module's parameters and
   * buffers, converting dtype and device as needed. A shape mismatch is always an error; missing
   * and unexpected keys are errors when strict, else they are returned. Every offending key is
   * named. Nothing is copied unless the whole load is valid.
   */
  loadStateDict(sd: StateDict | Map<string, Tensor>, strict = true): LoadResult {
    const given = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !given.has(k));
    const unexpectedKeys = [...given.keys()].filter((k) => !(k in own));
    const mismatched: string[] = [];
    for (const [k, t] of Object.entries(own)) {
      const src = given.get(k);
      if (!src) continue;
      if (!(src instanceof Tensor)) { mismatched.push(`${k} (not a tensor)`); continue; }
      const a = t.shape;
      const b = src.shape;
      if (a.length !== b.length || a.some((d, i) => d !== b[i])) mismatched.push(`${k} (expected [${a}], got [${b}])`);
    }
    if (mismatched.length || (strict && (missingKeys.length || unexpectedKeys.length)))
      throw new StateDictError(strict ? missingKeys : [], strict ? unexpectedKeys : [], mismatched);
    noGrad(() => {
      for (const [k, t] of Object.entries(own)) {
        const src = given.get(k);
        if (src) t.copy_(src);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /**
   * Moves every parameter and buffer to `device` (and floating ones to `dtype` when given),
   * keeping requires-grad; the old tensors are freed. Gradients are dropped.
   */
  to(device: Device, dtype?: DType): this {
    for (const m of this.modules()) {
      for (const map of [m.params_, m.buffers_]) {
        for (const [n, t] of map) {
          if (!t) continue;
          const dt = dtype && isFloating(t.dtype) ? dtype : undefined;
          if (t.device === device && (!dt || dt === t.dtype)) continue;
          const rg = t.requiresGrad;
          // Under noGrad the converted tensor is a fresh leaf, as nn.Module.to() gives.
          const moved = noGrad(() => t.to(device, dt, { copy: true }));
          if (rg) moved.requiresGrad_(true);
          keep(moved);
          map.set(n, moved);
          t.dispose();
        }
      }
    }
    return this;
  }
}

/** A module with one tensor in and one tensor out: what Sequential chains. */
export interface TensorModule extends Module {
  forward(x: Tensor): Tensor;
}
