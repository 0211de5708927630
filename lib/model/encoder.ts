// One SoCo network, f^I + RoIAlign + f^H + projector g (paper Eq. 1-4): the online network (with
// the predictor held by SoCoModel) and the target network are two instances. Children are named
// `backbone`, `roi_heads` (Detectron2's names) and `projector`, so the detector part of the state
// dict is already Detectron2's.
import { Tensor, arange, cat, full, tidy } from '../torch';
import { Module } from '../nn';
import { FPN, LEVEL_STRIDES } from './fpn';
import { MLP } from './mlp';
import { PAPER_LEVEL_THRESHOLDS, ViewSize, assignLevels } from './poolers';
import { Res5ROIHeads } from './res5_head';
import { ResNet, ResNetDepth, STAGE_STRIDES, stageSpec } from './resnet';
import { BoxROIHeads, ROIHeads } from './roi_heads';

export interface SoCoNetworkOptions {
  /** 'fpn': R-FPN, RoIAlign 7x7, 4conv1fc head (paper). 'c4': RoIAlign 14x14 on C4, res5 head. */
  arch: 'fpn' | 'c4';
  depth: ResNetDepth;
  /** arch fpn only. false: no FPN, RoIAlign 7x7 on C5 (Table 4 ablation). */
  fpn: boolean;
  /** Table 4 "Head". false: no R-CNN head (no 4conv1fc for fpn, no res5 for c4): the RoI is average-pooled into the projector. */
  head: boolean;
  /** Table 4 "Scale-aware assignment": pool each box on the level its size selects (paper); false: every box on `singleLevel`. */
  scaleAware: boolean;
  /** Level (0 = P2 ... 3 = P5) used for every box when scaleAware is false. */
  singleLevel: number;
  /** The authors' code: pool every box on all four levels, run head/projector/predictor per level, keep each box's assigned level. */
  poolAllLevels: boolean;
  /** Scale-aware thresholds on sqrt(w*h) in view pixels (paper 48, 96, 192). */
  levelThresholds: [number, number, number];
  /** RoIAlign scale of each feature map: 'stride' = 1/stride (Detectron2, paper); 'map' = the map's
   * size over the view's (the authors' code: a 112 view's P5 is 4x4, scale 4/112). */
  poolerScale: 'stride' | 'map';
  projectorHidden: number;
  predictorHidden: number;
  embedDim: number;
}

export const PAPER_NETWORK: Readonly<SoCoNetworkOptions> = Object.freeze({
  arch: 'fpn', depth: 50, fpn: true, head: true, scaleAware: true, singleLevel: 0, poolAllLevels: false,
  levelThresholds: PAPER_LEVEL_THRESHOLDS, poolerScale: 'stride', projectorHidden: 4096, predictorHidden: 4096, embedDim: 256,
} as SoCoNetworkOptions);

/** Fills defaults (paper) and rejects inconsistent combinations, naming the option. */
export function resolveNetworkOptions(o: Partial<SoCoNetworkOptions> = {}): SoCoNetworkOptions {
  const r: SoCoNetworkOptions = { ...PAPER_NETWORK, ...o, levelThresholds: [...(o.levelThresholds ?? PAPER_NETWORK.levelThresholds)] as [number, number, number] };
  const fail = (m: string): never => { throw new TypeError(`SoCo model options: ${m}`); };
  if (r.arch !== 'fpn' && r.arch !== 'c4') fail(`arch must be 'fpn' or 'c4', got '${r.arch}'`);
  if (![18, 34, 50, 101].includes(r.depth)) fail(`depth must be 18, 34, 50 or 101, got ${r.depth}`);
  if (r.arch === 'c4' && o.fpn === true) fail("fpn applies to arch 'fpn' only");
  if (r.arch === 'c4') r.fpn = false;
  if (r.poolAllLevels && !(r.arch === 'fpn' && r.fpn)) fail('poolAllLevels needs arch fpn with fpn true');
  if (r.poolAllLevels && !r.scaleAware) fail('poolAllLevels selects each box by its scale-aware level: it needs scaleAware true');
  if (r.poolerScale !== 'stride' && r.poolerScale !== 'map') fail(`poolerScale must be 'stride' or 'map', got '${String(r.poolerScale)}'`);
  if (!Number.isInteger(r.singleLevel) || r.singleLevel < 0 || r.singleLevel > 3) fail(`singleLevel must be 0..3 (P2..P5), got ${r.singleLevel}`);
  const t = r.levelThresholds;
  if (t.length !== 3 || !(t[0] < t[1] && t[1] < t[2])) fail(`levelThresholds must be 3 increasing numbers, got [${t}]`);
  for (const k of ['projectorHidden', 'predictorHidden', 'embedDim'] as const)
    if (!Number.isInteger(r[k]) || r[k] <= 0) fail(`${k} must be a positive integer, got ${r[k]}`);
  return r;
}

/** backbone + roi_heads + projector. See SoCoModel (soco.ts) for the input contract. */
export class SoCoNetwork extends Module {
  declare readonly backbone: FPN | ResNet;
  declare readonly roi_heads: ROIHeads;
  declare readonly projector: MLP;
  readonly options: SoCoNetworkOptions;

  constructor(options: Partial<SoCoNetworkOptions> = {}) {
    super();
    const o = (this.options = resolveNetworkOptions(options));
    if (o.arch === 'c4') {
      const body = new ResNet({ depth: o.depth, lastStage: 'res4' });
      this.registerModule('backbone', body);
      this.registerModule('roi_heads', o.head
        ? new Res5ROIHeads(o.depth, 14, undefined, o.poolerScale)
        : new BoxROIHeads({ inChannels: body.channels('res4'), strides: [STAGE_STRIDES.res4], resolution: 14, head: 'pool', scale: o.poolerScale }));
    } else if (o.fpn) {
      const fpn = new FPN({ depth: o.depth });
      this.registerModule('backbone', fpn);
      this.registerModule('roi_heads', new BoxROIHeads({ inChannels: fpn.outChannels, strides: LEVEL_STRIDES, head: o.head ? 'box' : 'pool', scale: o.poolerScale }));
    } else {
      this.registerModule('backbone', new ResNet({ depth: o.depth, lastStage: 'res5' }));
      this.registerModule('roi_heads', new BoxROIHeads({ inChannels: stageSpec(o.depth, 'res5').outChannels, strides: [STAGE_STRIDES.res5], head: o.head ? 'box' : 'pool', scale: o.poolerScale }));
    }
    this.registerModule('projector', new MLP(this.roi_heads.outDim, o.projectorHidden, o.embedDim));
  }

  /** Whether boxes are spread over several feature maps (and so need levels). */
  get multiLevel(): boolean { return this.options.arch === 'fpn' && this.options.fpn; }

  /** Image features for the RoI head: [P2, P3, P4, P5] (FPN), [C5] (no FPN) or [C4] (C4). */
  features(images: Tensor): Tensor[] {
    if (this.backbone instanceof FPN) {
      const p = this.backbone.forward(images);
      return [p.p2, p.p3, p.p4, p.p5];
    }
    const c = this.backbone.forward(images);
    return tidy(() => [this.options.arch === 'c4' ? c.res4! : c.res5!]);
  }

  /** The level of each box ([R] int64), per the options; `given` overrides when scale-aware. */
  levels(boxes: Tensor, given?: Tensor): Tensor {
    const o = this.options;
    if (!o.scaleAware) return full([boxes.size(0)], o.singleLevel, { dtype: 'int64', device: boxes.device });
    return given ?? assignLevels(boxes, o.levelThresholds);
  }

  /**
   * Box embeddings g(f^H(RoIAlign(features, boxes))) of boxes in a view of viewSize [H, W]: one
   * [R, embedDim] tensor, or with poolAllLevels one per level (every box on every level). `then`
   * (the predictor, online) runs on each before the per-level selection, as the authors' code does.
   */
  embed(features: Tensor[], boxes: Tensor, levels: Tensor | undefined, viewSize: ViewSize, then?: (z: Tensor) => Tensor): Tensor {
    return tidy(() => {
      const post = (h: Tensor): Tensor => {
        const z = this.projector.forward(h);
        return then ? then(z) : z;
      };
      if (!this.options.poolAllLevels) return post(this.roi_heads.forward(features, boxes, this.multiLevel ? levels : undefined, viewSize));
      const perLevel = this.roi_heads.forwardEveryLevel(features, boxes, viewSize).map(post);
      // Box r keeps its embedding from level levels[r]: stacked[levels[r], r].
      const r = boxes.size(0);
      const rows = levels!.mul(r).add(arange(0, r, 1, { dtype: 'int64', device: boxes.device }));
      return cat(perLevel, 0).indexSelect(0, rows);
    });
  }
}
