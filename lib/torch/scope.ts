// Memory scopes. Node-API finalizers run only after the event loop turns, far too late to free
// gigabytes of activations, so tensors are freed explicitly: dispose() one, or tidy(fn) to free
// everything created inside fn except what it returns. Scopes follow async functions through
// AsyncLocalStorage, so concurrent async work never frees another task's tensors.
//
// The GC backstop (a FinalizationRegistry that frees the handle of a collected wrapper) is only
// armed for tensors that live outside every scope: registering costs about as much as a tiny op,
// and a tensor inside a scope is freed by the scope anyway (the scope holds it, so GC cannot).
// Outside scopes it is armed at the next microtask checkpoint, not at construction: finalizer
// callbacks cannot run before the current job ends anyway, and a tensor disposed within the same
// job (`a.add(b).dispose()`) then never pays for registering.
import { AsyncLocalStorage } from 'async_hooks';
import { native } from './native';

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

/** A tensor-table handle owner (Tensor): what adopt() and the GC backstop need. */
export interface Owned extends Disposable {
  readonly id: number;
  registered: boolean;
  /** Marks the wrapper disposed and hands its handle over to be freed by the caller. */
  takeHandle(): number;
}

interface Scope {
  created: Disposable[];
  kept: Set<Disposable>;
  parent: Scope | undefined;
  done: boolean;
}

const storage = new AsyncLocalStorage<Scope>();
const registry = new FinalizationRegistry<number>((id) => native.free(id));

function isOwned(t: Disposable): t is Owned {
  return typeof (t as Owned).takeHandle === 'function';
}

let pending: Disposable[] = [];
let flushQueued = false;

function flush(): void {
  flushQueued = false;
  const ts = pending;
  pending = [];
  for (const t of ts) {
    if (isOwned(t) && !t.registered && !t.isDisposed) {
      registry.register(t, t.id, t);
      t.registered = true;
    }
  }
}

function arm(t: Disposable): void {
  if (!isOwned(t)) return;
  pending.push(t);
  if (!flushQueued) {
    flushQueued = true;
    queueMicrotask(flush);
  }
}

/** Called by every Tensor constructor: the current scope owns it, or else the GC backstop. */
export function adopt(t: Owned): void {
  const s = storage.getStore();
  if (s !== undefined && !s.done) s.created.push(t);
  else arm(t);
}

/** Called by Tensor.dispose() before freeing the handle. */
export function release(t: Owned): void {
  if (t.registered) {
    registry.unregister(t);
    t.registered = false;
  }
}

/** Adds any disposable (not only tensors) to the current scope, if there is one. */
export function track(t: Disposable): void {
  const s = storage.getStore();
  if (s && !s.done) s.created.push(t);
}

/** Marks a tensor to survive every enclosing tidy scope (the caller then owns it). */
export function keep<T extends Disposable>(t: T): T {
  const s = storage.getStore();
  if (!s) return t;
  for (let p: Scope | undefined = s; p; p = p.parent) p.kept.add(t);
  return t;
}

/** Whether code runs inside tidy() (for tests and assertions). */
export function inScope(): boolean {
  return storage.getStore() !== undefined;
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

// A reused buffer of handles to free; taken (set to null) while a finish() runs, since a
// non-tensor disposable's dispose() could itself end a nested scope.
let spare: Int32Array | null = new Int32Array(256);

function finish(scope: Scope, result: unknown): void {
  scope.done = true;
  const returned = new Set<Disposable>();
  if (result !== null && typeof result === 'object') collect(result, returned, new Set());
  // The common case, nothing returned or kept, stays a plain loop.
  const keepSome = returned.size > 0 || scope.kept.size > 0;
  const parent = scope.parent;
  // Tensors are freed in one native call for the whole scope; other disposables one by one.
  let handles = spare ?? new Int32Array(256);
  spare = null;
  let n = 0;
  try {
    for (const t of scope.created) {
      if (t.isDisposed) continue;
      const kept = keepSome && scope.kept.has(t);
      if (kept || (keepSome && returned.has(t))) {
        // A returned tensor belongs to the enclosing scope now, which frees it unless it returns
        // it too; a kept one, or one leaving the outermost scope, belongs to the caller (and GC).
        if (parent && !parent.done && !kept) parent.created.push(t);
        else arm(t);
      } else if (isOwned(t)) {
        if (n === handles.length) {
          const bigger = new Int32Array(n * 2);
          bigger.set(handles);
          handles = bigger;
        }
        handles[n++] = t.takeHandle();
      } else {
        t.dispose();
      }
    }
  } finally {
    scope.created.length = 0;
    try {
      if (n > 0) native.freeMany(handles.subarray(0, n));
    } finally {
      spare = handles;
    }
  }
}

/**
 * Runs fn and frees every tensor created inside it, except those in its result (found in arrays,
 * Maps and plain objects, at any depth) and those passed to keep(). Nests; fn may be async (the
 * scope then ends when its promise settles, and tensors created by concurrent tasks are not
 * touched).
 */
export function tidy<R>(fn: () => R): R {
  const scope: Scope = { created: [], kept: new Set(), parent: storage.getStore(), done: false };
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
