// lib/distributed: multi-process training on c10d. A worker calls initFromEnv() (torchrun or Slurm
// variables), wraps its BatchNorms with convertSyncBatchNorm(), broadcasts rank 0's state with
// broadcastModule(), averages gradients with a GradientReducer and leaves the loop when
// ctx.stop.agreed(). `soco-train train --nproc-per-node N` starts the workers through launch().
export { Backend, ReduceOp, TCPStore, ProcessGroup, GroupOptions, StoreOptions, CollectiveOptions, DEFAULT_TIMEOUT_MS, availableBackends } from './group';
export { DistEnv, DistEnvError, readDistEnv, expandNodelist, tasksOnNode } from './env';
export { DistContext, InitOptions, initFromEnv, isLaunchedWorker } from './init';
export { Member, RendezvousError } from './rendezvous';
export { LaunchOptions, LaunchResult, WorkerFailure, launch, freePort, addLaunchOptions, launchOptionsFrom } from './launch';
export { GradientReducer, ReduceStats, SteppingOptimizer, reduceGradientsInStep, broadcastTensors, broadcastModule, DEFAULT_BUCKET_MB } from './ddp';
export { SyncBatchNorm, syncBatchNorm, convertSyncBatchNorm } from './syncbn';
export { StopSignal, INTERRUPTED_EXIT_CODE, STOP_MESSAGE, ABORT_MESSAGE } from './stop';
