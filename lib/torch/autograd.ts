import { native } from './native';
import { DType, dtypeCode, dtypeFromCode } from './dtype';
import { Tensor, TorchError } from './tensor';

/**
 * Runs fn between set() and restore(). Grad mode and autocast are thread-wide LibTorch state, not
 * per async task: keeping one switched across an await would change it for every other task on
 * the event loop. So only synchronous bodies.
 */
function synchronously<R>(name: string, set: () => void, restore: () => void, fn: () => R): R {
  set();
  let result: R;
  try {
    result = fn();
  } finally {
    restore();
  }
  if (result instanceof Promise) {
    result.catch(() => undefined);
    throw new TorchError(`the function must be synchronous (LibTorch's mode is thread-wide, so it cannot follow an await); call ${name} inside the async code, around the synchronous part`, name);
  }
  return result;
}

function withGradMode<R>(enabled: boolean, fn: () => R, name: string): R {
  let prev = true;
  return synchronously(name, () => { prev = native.setGradEnabled(enabled); }, () => native.setGradEnabled(prev), fn);
}

/** Runs fn with gradient recording off (torch.no_grad) and restores the previous mode. fn must be synchronous. */
export function noGrad<R>(fn: () => R): R { return withGradMode(false, fn, 'noGrad'); }

/** Runs fn with gradient recording on (torch.enable_grad), e.g. inside a noGrad region. fn must be synchronous. */
export function enableGrad<R>(fn: () => R): R { return withGradMode(true, fn, 'enableGrad'); }

export function isGradEnabled(): boolean {
  const cur: boolean = native.setGradEnabled(undefined);
  return cur;
}

/**
 * Accumulates gradients of outputs into the leaves' .grad, each output weighted by its entry in
 * grads (needed for non-scalar outputs), as torch.autograd.backward.
 */
export function backward(outputs: Tensor[], grads?: Tensor[], retainGraph = false): void {
  native.backward(outputs.map((t) => t.id), grads ? grads.map((t) => t.id) : null, retainGraph);
}

export type AutocastDtype = 'bfloat16' | 'float16';

/**
 * Runs fn under automatic mixed precision for one device type, as `with torch.autocast(...)`:
 * matmuls and convolutions run in `dtype`, precision-sensitive ops (norms, softmax, losses) in
 * float32, following LibTorch's own op lists. Nests; leaving the outermost region drops the cache
 * of casted weights. fn must be synchronous (see synchronously()).
 */
export function autocast<R>(deviceType: 'cpu' | 'cuda', dtype: AutocastDtype, fn: () => R, enabled = true): R {
  if (dtype !== 'bfloat16' && dtype !== 'float16') throw new TorchError(`dtype must be 'bfloat16' or 'float16', got ${String(dtype)}`, 'autocast');
  let prev: [boolean, number] = [false, 0];
  return synchronously('autocast', () => {
    prev = native.autocastState(deviceType);
    native.setAutocast(deviceType, enabled, dtypeCode[dtype as DType], 1);
  }, () => native.setAutocast(deviceType, prev[0], prev[1], -1), fn);
}

/** Whether autocast is on for the device type, and its dtype. */
export function autocastState(deviceType: 'cpu' | 'cuda'): { enabled: boolean; dtype: DType } {
  const [enabled, code]: [boolean, number] = native.autocastState(deviceType);
  return { enabled, dtype: dtypeFromCode(code) };
}
