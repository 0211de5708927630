// lib/train: SoCo training. The public pieces; lib/index.ts re-exports them for `soco-train`.
export { SoCoTrainer, CheckpointIO, TrainerHooks, CheckpointEvent, TrainResult } from './trainer';
export {
  TrainConfig, ResolvedConfig, ConfigSources, ConfigError, DEFAULT_CONFIG, CONFIG_FIELDS, PRESETS, PresetName, ABLATIONS,
  resolveConfig, readConfigFile, checkConfig,
} from './config';
export { socoLoss, directedTerm, idWeights, normalizedEmbeddingStd, LossNormalization, ViewPairEmbeddings, DirectedTermInput, SoCoLoss } from './loss';
export { LARS, LarsOptions, LarsState } from './lars';
export { lrAt, tauAt, scaledLr, LrSchedule } from './schedules';
export { trainStep, anchorPairs, ViewPair, StepResult, NonFiniteLossError } from './step';
export { CheckpointSaver } from './checkpoint';
export { MetricRecord, readMetrics } from './metrics';
export { plotRun } from './plot';
export { evalRetrieval, RetrievalOptions, RetrievalResult, RetrievalScore, loadOnlineNetwork } from './eval_retrieval';
export { createBatchSource, TrainBatch, BatchSource } from './data_source';
