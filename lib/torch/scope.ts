// Memory scopes. Node-API finalizers run only after the event loop turns, far too late to free
// gigabytes of activations, so tensors are freed explicitly: dispose() one, or tidy(fn) to free
// everything created inside fn except what it returns. Scopes follow async functions through
// AsyncLocalStorage, so concurrent async work never frees another task's tensors.
import { AsyncLocalStorage } from 'async_hooks';

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

interface Scope {
  created: Disposable[];
  kept: Set<Disposable>;
  parent: Scope | undefined;
}

const storage = new AsyncLocalStorage<Scope>();

/** Called by every Tensor constructor. */
export function track(t: Disposable): void {
  const s = storage.getStore();
  if (s) s.created.push(t);
}

/** Marks a tensor to survive every enclosing tidy scope (the caller then owns it). */
export function keep<T extends Disposable>(t: T): T {
  for (let s = storage.getStore(); s; s = s.parent) s.kept.add(t);
  return t;
}

function collect(value: unknown, into: Set<Disposable>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (typeof (value as Disposable).dispose === 'function' && 'isDisposed' in (value as object)) {
    into.add(value as Disposable);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, into, seen);
  else if (value instanceof Map) for (const v of value.values()) collect(v, into, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype)
    for (const v of Object.values(value as object)) collect(v, into, seen);
}

function finish(scope: Scope, result: unknown): void {
  const returned = new Set<Disposable>();
  collect(result, returned, new Set());
  for (const t of scope.created) {
    if (returned.has(t) || scope.kept.has(t)) {
      // A returned tensor belongs to the enclosing scope now, which frees it unless it returns it too.
      if (scope.parent && !scope.kept.has(t)) scope.parent.created.push(t);
    } else if (!t.isDisposed) {
      t.dispose();
    }
  }
}

/**
 * Runs fn and frees every tensor created inside it, except those in its result (found in arrays,
 * Maps and plain objects, at any depth) and those passed to keep(). Nests; fn may be async.
 */
export function tidy<R>(fn: () => R): R {
  const scope: Scope = { created: [], kept: new Set(), parent: storage.getStore() };
  let result: R;
  try {
    result = storage.run(scope, fn);
  } catch (err) {
    finish(scope, undefined);
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (v) => { finish(scope, v); return v; },
      (err) => { finish(scope, undefined); throw err; },
    ) as R;
  }
  finish(scope, result);
  return result;
}
