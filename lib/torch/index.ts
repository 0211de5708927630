// lib/torch: the typed facade of the addon and the only module that imports it.
import { native } from './native';
import { Generator, Tensor, cudaDeviceCount } from './tensor';
import { DEVICE_CHOICES, isDeviceChoice } from './dtype';

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
import { buildInfo } from './build';
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

/**
 * The device a --device flag asks for, on this machine: 'auto' is CUDA when available, else the
 * CPU; 'cuda' and 'cuda:N' must exist. The one parser of every command's --device; errors name `flag`.
 */
export function pickDevice(choice: string, flag = '--device'): string {
  if (!isDeviceChoice(choice)) throw new Error(`${flag} ${choice}: expected ${DEVICE_CHOICES}`);
  const n = cudaDeviceCount();
  if (choice === 'auto') return n > 0 ? 'cuda' : 'cpu';
  const index = choice === 'cpu' ? -1 : choice === 'cuda' ? 0 : Number(choice.slice(5));
  if (index >= n)
    throw new Error(`${flag} ${choice}: ${n === 0 ? `no CUDA device here (${buildInfo().cuda ? 'none is visible' : 'this LibTorch was built without CUDA'})`
      : `this machine has ${n} CUDA device(s), cuda:0 to cuda:${n - 1}`}; use --device cpu or auto`);
  return choice;
}

export type BackendFlag = 'allowTF32CuBLAS' | 'allowTF32CuDNN' | 'deterministicAlgorithms' | 'cudnnBenchmark' | 'cudnnDeterministic';

/** Global LibTorch switches (torch.backends.*): set() returns the previous value. */
export const backends = {
  get: (flag: BackendFlag): boolean => native.backendFlag(flag),
  set: (flag: BackendFlag, value: boolean): boolean => native.backendFlag(flag, value),
};
