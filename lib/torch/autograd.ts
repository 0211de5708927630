import { native } from './native';
import { Tensor } from './tensor';

/** Runs fn with gradient recording off (torch.no_grad); restores the previous mode after, also for async fn. */
export function noGrad<R>(fn: () => R): R {
  const prev: boolean = native.setGradEnabled(false);
  let result: R;
  try {
    result = fn();
  } catch (err) {
    native.setGradEnabled(prev);
    throw err;
  }
  if (result instanceof Promise) return result.finally(() => native.setGradEnabled(prev)) as R;
  native.setGradEnabled(prev);
  return result;
}

export function isGradEnabled(): boolean {
  const cur: boolean = native.setGradEnabled(undefined);
  return cur;
}

/** Accumulates gradients of outputs (optionally weighted by grads) into the leaves' .grad. */
export function backward(outputs: Tensor[], grads?: Tensor[], retainGraph = false): void {
  native.backward(outputs.map((t) => t.id), grads ? grads.map((t) => t.id) : null, retainGraph);
}
