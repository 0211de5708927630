// lib/model: SoCo's networks in Detectron2's module layout (one module per file).
export { ConvNorm, ConvNormOptions, NormFactory, batchNorm2d } from './conv_norm';
export { ResNet, ResNetDepth, ResNetOptions, BasicStem, BasicBlock, BottleneckBlock, makeStage, stageSpec, STAGES, STAGE_STRIDES } from './resnet';
export { FPN, FPNOptions, LEVELS, LEVEL_STRIDES } from './fpn';
export { ROIPooler, PoolerOptions, ViewSize, assignLevels, checkBoxes, PAPER_LEVEL_THRESHOLDS } from './poolers';
export { FastRCNNConvFCHead, BoxHeadOptions } from './box_head';
export { BoxROIHeads, ROIHeads } from './roi_heads';
export { Res5ROIHeads } from './res5_head';
export { MLP } from './mlp';
export { SoCoNetwork, SoCoNetworkOptions, PAPER_NETWORK, resolveNetworkOptions } from './encoder';
export { SoCoModel, SoCoModelOptions, SoCoView, SoCoOutput, checkViews } from './soco';
export { exportDetectron2, detectron2Config, detectron2Yaml, Detectron2Arch, Detectron2Checkpoint, Detectron2Export } from './export';
export { detectron2Pickle } from './detectron2_pickle';
export { saveTorchScript, featureExtractorSpec, featureNames, ScriptModuleSpec } from './torchscript';
