// lib/torch: the typed facade of the addon and the only module that imports it.
import { native } from './native';
import { Generator, Tensor, cudaDeviceCount } from './tensor';

export * from './dtype';
export { Tensor, TorchError, Generator, cat, stack, where, resolveDevice } from './tensor';
export type { Scalar, TensorLike } from './tensor';
export * from './functional';
export { noGrad, enableGrad, isGradEnabled, backward, autocast, autocastState } from './autograd';
export type { AutocastDtype } from './autograd';
export { tidy, keep, inScope } from './scope';
export type { Disposable } from './scope';
export { NativeLoadError } from './native';
export { save, load } from './serialize';
export { buildInfo, loadTorchvisionOps } from './build';
export type { BuildInfo } from './build';

/** Seeds LibTorch's default generators (CPU and every CUDA device), as torch.manual_seed. */
export function manualSeed(seed: number): void { native.manualSeed(seed); }

/** The default generator's state (for checkpoints); setRngState() restores it exactly. */
export function getRngState(device = 'cpu'): Tensor { return Generator.default(device).getState(); }
export function setRngState(state: Tensor, device = 'cpu'): void { Generator.default(device).setState(state); }

/** Number of tensors currently held by the addon (not yet disposed or collected). */
export function liveTensors(): number { return native.liveCount(); }
/** Bytes of the distinct storages those tensors reference (views of one storage count once). */
export function liveBytes(): number { return native.liveBytes(); }

/** LibTorch's intra-op thread count (at::set_num_threads). */
export function setNumThreads(n: number): number { return native.setNumThreads(n); }
export function getNumThreads(): number { return native.setNumThreads(undefined); }

/** The CUDA caching allocator's counters for one device, in bytes. */
export interface CudaMemoryStats { allocated: number; reserved: number; peakAllocated: number; peakReserved: number }

export const cuda = {
  isAvailable: (): boolean => cudaDeviceCount() > 0,
  deviceCount: (): number => cudaDeviceCount(),
  /** Waits for all work queued on the device (default: the current one). */
  synchronize: (index?: number): void => { native.cudaSynchronize(index); },
  /** torch.cuda.memory_allocated / memory_reserved and their peaks (default: the current device). */
  memoryStats: (index?: number): CudaMemoryStats => native.cudaMemoryStats(index),
  resetPeakMemoryStats: (index?: number): void => { native.cudaResetPeakMemoryStats(index); },
};

export type BackendFlag = 'allowTF32CuBLAS' | 'allowTF32CuDNN' | 'deterministicAlgorithms' | 'cudnnBenchmark' | 'cudnnDeterministic';

/** Global LibTorch switches (torch.backends.*): set() returns the previous value. */
export const backends = {
  get: (flag: BackendFlag): boolean => native.backendFlag(flag),
  set: (flag: BackendFlag, value: boolean): boolean => native.backendFlag(flag, value),
};
