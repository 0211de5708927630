// lib/nn: modules, layers and initialisations (PyTorch's torch.nn semantics); nothing SoCo-specific.
export { Module, TensorModule, StateDict, StateDictError, LoadResult } from './module';
export { Conv2d, Conv2dOptions } from './conv';
export { Linear } from './linear';
export { BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormOptions } from './batchnorm';
export { ReLU, Flatten } from './activation';
export { Sequential } from './container';
export { replaceModules } from './replace';
export * as init from './init';
