import { native } from './native';
import { Tensor, TorchError } from './tensor';

function withGradMode<R>(enabled: boolean, fn: () => R, name: string): R {
  const prev: boolean = native.setGradEnabled(enabled);
  let result: R;
  try {
    result = fn();
  } finally {
    native.setGradEnabled(prev);
  }
  // LibTorch's grad mode is one thread-wide flag, not per async task: keeping it switched across
  // an await would change it for every other task on the event loop. So only synchronous bodies.
  if (result instanceof Promise) {
    result.catch(() => undefined);
    throw new TorchError(`the function must be synchronous (grad mode is thread-wide, so it cannot follow an await); call ${name} inside the async code, around the synchronous part`, name);
  }
  return result;
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
