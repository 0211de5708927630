// lib/torch: the typed facade of the addon and the only module that imports it.
import { native } from './native';

export * from './dtype';
export { Tensor, TorchError, Generator, cat, stack, where } from './tensor';
export * from './functional';
export { noGrad, isGradEnabled, backward } from './autograd';
export { tidy, keep } from './scope';
export { NativeLoadError } from './native';

/** Seeds LibTorch's default generators (CPU and CUDA). */
export function manualSeed(seed: number): void { native.manualSeed(seed); }

/** Number of tensors currently held by the addon (not yet disposed or collected). */
export function liveTensors(): number { return native.liveCount(); }

export function setNumThreads(n: number): number { return native.setNumThreads(n); }
export function getNumThreads(): number { return native.setNumThreads(undefined); }

export const cuda = {
  isAvailable: (): boolean => native.cudaDeviceCount() > 0,
  deviceCount: (): number => native.cudaDeviceCount(),
};

export const version: { torch: string; cuda: boolean } = native.version();
