// Detectron2 export of the ONLINE network (RECIPE.md "Export"): the detector part of the state
// dict under Detectron2's own names, no projector/predictor/target. The model's modules already
// carry Detectron2's names, so the default export is a plain dump of `backbone.*` and
// `roi_heads.*`; exporting to the other architecture only re-parents the ResNet stages.
import { StateDict } from '../nn';
import { FPN } from './fpn';
import { ResNet, STAGES } from './resnet';
import { SoCoNetwork } from './encoder';
import { SoCoModel } from './soco';
import { Res5ROIHeads } from './res5_head';
import { BoxROIHeads } from './roi_heads';

export type Detectron2Arch = 'fpn' | 'c4';

/** What Detectron2's DetectionCheckpointer reads (torch.load-able or pickled). */
export interface Detectron2Checkpoint {
  model: StateDict;
  __author__: string;
  matching_heuristics: boolean;
}

export interface Detectron2Export {
  checkpoint: Detectron2Checkpoint;
  arch: Detectron2Arch;
  /** Parts written, e.g. 'ResNet stem+res2..res5', 'FPN', 'box head (4conv1fc)'. */
  included: string[];
  /** Parts of the Detectron2 model not in the file (Detectron2 initialises them), with why. */
  omitted: string[];
  /** Detectron2 config keys to fine-tune with (authors' settings, RECIPE.md). */
  config: Record<string, string | number | boolean | number[]>;
}

/**
 * The online network's detector weights for Detectron2 `arch` (default: the model's own):
 *  - 'fpn': backbone.bottom_up.{stem,res2..res5}.*, backbone.fpn_{lateral,output}{2..5}.*,
 *    roi_heads.box_head.{conv1..4,fc1}.* (Mask R-CNN R50-FPN with SyncBN FPN and 4conv1fc head);
 *  - 'c4': backbone.{stem,res2..res4}.*, roi_heads.res5.* (Mask R-CNN R50-C4).
 * BN running statistics and num_batches_tracked are included. Tensors are the model's own (no
 * copy): save the checkpoint before training on.
 */
export function exportDetectron2(model: SoCoModel | SoCoNetwork, arch?: Detectron2Arch): Detectron2Export {
  const net = model instanceof SoCoModel ? model.online : model;
  const o = net.options;
  const target: Detectron2Arch = arch ?? o.arch;
  if (target !== 'fpn' && target !== 'c4') throw new TypeError(`exportDetectron2: arch must be 'fpn' or 'c4', got '${target}'`);
  const body: ResNet = net.backbone instanceof FPN ? net.backbone.bottom_up : net.backbone;
  // The ResNet stages the network has, wherever they live (res5 is the RoI head in C4).
  const stages: Record<string, StateDict> = { stem: body.stem.stateDict() };
  for (const s of body.stageNames) stages[s] = body.stage(s).stateDict();
  if (net.roi_heads instanceof Res5ROIHeads) stages.res5 = net.roi_heads.res5.stateDict();
  const sd: StateDict = {};
  const put = (prefix: string, part: StateDict): void => {
    for (const [k, v] of Object.entries(part)) sd[`${prefix}${k}`] = v;
  };
  const included: string[] = [];
  const omitted: string[] = [];
  const have = ['stem', ...STAGES].filter((s) => s in stages);
  if (target === 'fpn') {
    for (const s of have) put(`backbone.bottom_up.${s}.`, stages[s]);
    included.push(`ResNet-${o.depth} ${have.join(', ')}`);
    if (!('res5' in stages)) omitted.push('res5 (the model was trained without it)');
    if (net.backbone instanceof FPN) {
      for (const [k, v] of Object.entries(net.backbone.stateDict())) if (k.startsWith('fpn_')) sd[`backbone.${k}`] = v;
      included.push('FPN lateral/output convs with their norms');
    } else {
      omitted.push('FPN (the model was trained without it)');
    }
    const rh = net.roi_heads;
    if (rh instanceof BoxROIHeads && rh.box_head && net.backbone instanceof FPN) {
      put('roi_heads.box_head.', rh.box_head.stateDict());
      included.push('box head (4conv1fc)');
    } else {
      omitted.push(rh instanceof BoxROIHeads && rh.box_head ? 'box head (it was trained on C5, Detectron2 runs it on the FPN)' : 'box head (the model was trained without it)');
    }
  } else {
    for (const s of have.filter((x) => x !== 'res5')) put(`backbone.${s}.`, stages[s]);
    included.push(`ResNet-${o.depth} ${have.filter((x) => x !== 'res5').join(', ')}`);
    if ('res5' in stages) {
      put('roi_heads.res5.', stages.res5);
      included.push('res5 RoI head');
    } else {
      omitted.push('res5 RoI head (the model was trained without it)');
    }
    if (net.backbone instanceof FPN) omitted.push('FPN and box head (no place for them in R50-C4)');
  }
  omitted.push('RPN, box predictor, mask head (not part of SoCo pretraining)');
  return { checkpoint: { model: sd, __author__: 'soco-train', matching_heuristics: true }, arch: target, included, omitted, config: detectron2Config(target, o.depth) };
}

/** The Detectron2 keys that go with an export: the authors' fine-tuning settings (RECIPE.md). */
export function detectron2Config(arch: Detectron2Arch, depth: number): Record<string, string | number | boolean | number[]> {
  const c: Record<string, string | number | boolean | number[]> = {
    'MODEL.PIXEL_MEAN': [123.675, 116.28, 103.53],
    'MODEL.PIXEL_STD': [58.395, 57.12, 57.375],
    'INPUT.FORMAT': 'RGB',
    'MODEL.RESNETS.DEPTH': depth,
    'MODEL.RESNETS.STRIDE_IN_1X1': false,
    'MODEL.RESNETS.NORM': 'SyncBN',
    'MODEL.BACKBONE.FREEZE_AT': 0,
  };
  if (depth < 50) c['MODEL.RESNETS.RES2_OUT_CHANNELS'] = 64;
  if (arch === 'fpn') {
    Object.assign(c, {
      'MODEL.FPN.NORM': 'SyncBN',
      'MODEL.ROI_BOX_HEAD.NAME': 'FastRCNNConvFCHead',
      'MODEL.ROI_BOX_HEAD.NUM_CONV': 4,
      'MODEL.ROI_BOX_HEAD.NUM_FC': 1,
      'MODEL.ROI_BOX_HEAD.NORM': 'SyncBN',
      'MODEL.ROI_MASK_HEAD.NORM': 'SyncBN',
    });
  }
  Object.assign(c, { 'SOLVER.WEIGHT_DECAY': 2.5e-5, 'TEST.PRECISE_BN.ENABLED': true });
  return c;
}

/**
 * A self-contained Detectron2 config (YAML) for Mask R-CNN 1x fine-tuning from an export: the
 * contents of Detectron2's Base-RCNN-{FPN,C4}.yaml + mask_rcnn_R_50_{FPN,C4}_1x.yaml with the
 * authors' SoCo changes (hologerry/SoCo detectron2_configs; RECIPE.md "Export"), so it needs no
 * _BASE_ file. configs/detectron2/*.yaml are this text with the default weights name.
 */
export function detectron2Yaml(arch: Detectron2Arch, weights: string, depth = 50): string {
  const fpn = arch === 'fpn';
  const lines = [
    `# Mask R-CNN R${depth}-${fpn ? 'FPN' : 'C4'} 1x COCO fine-tuning of soco-train weights (\`soco-train export --arch ${arch}\`),`,
    "# with the SoCo authors' settings: SyncBN everywhere, FREEZE_AT 0, STRIDE_IN_1X1 False, RGB input",
    '# normalised with the ImageNet mean/std the pretraining used, weight decay 2.5e-5, PreciseBN.',
    `# Self-contained (Detectron2's Base-RCNN-${fpn ? 'FPN' : 'C4'} + mask_rcnn_R_50_${fpn ? 'FPN' : 'C4'}_1x inlined). Run:`,
    '#   tools/train_net.py --config-file THIS.yaml --num-gpus 8 MODEL.WEIGHTS /path/to/export.pth',
    'MODEL:',
    '  META_ARCHITECTURE: "GeneralizedRCNN"',
    `  WEIGHTS: "${weights.replace(/["\\]/g, '\\$&')}"`,
    '  MASK_ON: True',
    '  PIXEL_MEAN: [123.675, 116.28, 103.53]',
    '  PIXEL_STD: [58.395, 57.12, 57.375]',
    '  BACKBONE:',
    ...(fpn ? ['    NAME: "build_resnet_fpn_backbone"'] : []),
    '    FREEZE_AT: 0',
    '  RESNETS:',
    `    DEPTH: ${depth}`,
    ...(depth < 50 ? ['    RES2_OUT_CHANNELS: 64'] : []),
    '    STRIDE_IN_1X1: False',
    '    NORM: "SyncBN"',
  ];
  if (fpn) {
    lines.push(
      '    OUT_FEATURES: ["res2", "res3", "res4", "res5"]',
      '  FPN:',
      '    IN_FEATURES: ["res2", "res3", "res4", "res5"]',
      '    NORM: "SyncBN"',
      '  ANCHOR_GENERATOR:',
      '    SIZES: [[32], [64], [128], [256], [512]]',
      '    ASPECT_RATIOS: [[0.5, 1.0, 2.0]]',
      '  RPN:',
      '    IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"]',
      '    PRE_NMS_TOPK_TRAIN: 2000',
      '    PRE_NMS_TOPK_TEST: 1000',
      '    POST_NMS_TOPK_TRAIN: 1000',
      '    POST_NMS_TOPK_TEST: 1000',
      '  ROI_HEADS:',
      '    NAME: "StandardROIHeads"',
      '    IN_FEATURES: ["p2", "p3", "p4", "p5"]',
      '  ROI_BOX_HEAD:',
      '    NAME: "FastRCNNConvFCHead"',
      '    NUM_CONV: 4',
      '    NUM_FC: 1',
      '    NORM: "SyncBN"',
      '    POOLER_RESOLUTION: 7',
      '  ROI_MASK_HEAD:',
      '    NAME: "MaskRCNNConvUpsampleHead"',
      '    NUM_CONV: 4',
      '    POOLER_RESOLUTION: 14',
      '    NORM: "SyncBN"',
    );
  } else {
    lines.push(
      '  RPN:',
      '    PRE_NMS_TOPK_TEST: 6000',
      '    POST_NMS_TOPK_TEST: 1000',
      '  ROI_HEADS:',
      '    NAME: "Res5ROIHeads"',
    );
  }
  lines.push(
    'DATASETS:',
    '  TRAIN: ("coco_2017_train",)',
    '  TEST: ("coco_2017_val",)',
    'SOLVER:',
    '  IMS_PER_BATCH: 16',
    '  BASE_LR: 0.02',
    '  WEIGHT_DECAY: 0.000025',
    '  STEPS: (60000, 80000)',
    '  MAX_ITER: 90000',
    'INPUT:',
    '  FORMAT: "RGB"',
    '  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)',
    'TEST:',
    '  PRECISE_BN:',
    '    ENABLED: True',
    'VERSION: 2',
  );
  return lines.join('\n') + '\n';
}
