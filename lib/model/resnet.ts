// ResNet in Detectron2's layout (modeling/backbone/resnet.py): `stem.conv1`, stages `res2..res5`
// of blocks `resN.i` with `conv1..conv3` and `shortcut`, each conv owning its `norm`. The stride
// of a bottleneck sits in the 3x3 conv (STRIDE_IN_1X1 = False, as SoCo and torchvision).
import { Tensor, maxPool2d, tidy } from '../torch';
import { Module, Sequential, TensorModule } from '../nn';
import { ones_, zeros_ } from '../nn/init';
import { ConvNorm, NormFactory, batchNorm2d } from './conv_norm';

export type ResNetDepth = 18 | 34 | 50 | 101;
export type StageName = 'res2' | 'res3' | 'res4' | 'res5';
export const STAGES: StageName[] = ['res2', 'res3', 'res4', 'res5'];
/** Output stride of each stage's features (C2..C5). */
export const STAGE_STRIDES: Record<StageName, number> = { res2: 4, res3: 8, res4: 16, res5: 32 };

const BLOCKS: Record<ResNetDepth, number[]> = { 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3] };

/** conv1 7x7/2 + norm + relu, then 3x3/2 max pool: [N, 3, H, W] -> [N, 64, ~H/4, ~W/4]. */
export class BasicStem extends Module implements TensorModule {
  declare readonly conv1: ConvNorm;

  constructor(inChannels = 3, outChannels = 64, norm: NormFactory = batchNorm2d) {
    super();
    this.registerModule('conv1', new ConvNorm(inChannels, outChannels, 7, { stride: 2, padding: 3, norm, relu: true }));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => maxPool2d(this.conv1.forward(x), 3, { stride: 2, padding: 1 }));
  }
}

/** Two 3x3 convs (ResNet-18/34): [N, C_in, H, W] -> [N, C_out, H/stride, W/stride]. */
export class BasicBlock extends Module implements TensorModule {
  declare readonly conv1: ConvNorm;
  declare readonly conv2: ConvNorm;
  declare readonly shortcut: ConvNorm | null;

  constructor(inChannels: number, outChannels: number, stride: number, norm: NormFactory) {
    super();
    this.registerModule('shortcut', inChannels !== outChannels ? new ConvNorm(inChannels, outChannels, 1, { stride, norm }) : null);
    this.registerModule('conv1', new ConvNorm(inChannels, outChannels, 3, { stride, padding: 1, norm, relu: true }));
    this.registerModule('conv2', new ConvNorm(outChannels, outChannels, 3, { padding: 1, norm }));
  }

  /** The block's last norm: its gamma is zero-initialised. */
  get lastNorm(): Module | null { return this.conv2.norm; }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const out = this.conv2.forward(this.conv1.forward(x));
      return out.add_(this.shortcut ? this.shortcut.forward(x) : x).relu_();
    });
  }
}

/** 1x1 -> 3x3 (stride) -> 1x1 bottleneck (ResNet-50/101): [N, C_in, H, W] -> [N, C_out, H/stride, W/stride]. */
export class BottleneckBlock extends Module implements TensorModule {
  declare readonly conv1: ConvNorm;
  declare readonly conv2: ConvNorm;
  declare readonly conv3: ConvNorm;
  declare readonly shortcut: ConvNorm | null;

  constructor(inChannels: number, outChannels: number, bottleneck: number, stride: number, norm: NormFactory) {
    super();
    this.registerModule('shortcut', inChannels !== outChannels ? new ConvNorm(inChannels, outChannels, 1, { stride, norm }) : null);
    this.registerModule('conv1', new ConvNorm(inChannels, bottleneck, 1, { norm, relu: true }));
    this.registerModule('conv2', new ConvNorm(bottleneck, bottleneck, 3, { stride, padding: 1, norm, relu: true }));
    this.registerModule('conv3', new ConvNorm(bottleneck, outChannels, 1, { norm }));
  }

  get lastNorm(): Module | null { return this.conv3.norm; }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const out = this.conv3.forward(this.conv2.forward(this.conv1.forward(x)));
      return out.add_(this.shortcut ? this.shortcut.forward(x) : x).relu_();
    });
  }
}

export type ResBlock = BasicBlock | BottleneckBlock;

export interface StageSpec { inChannels: number; outChannels: number; bottleneck: number; blocks: number; stride: number }

/** Channel plan of stage res{2..5} for a depth (Detectron2's RES2_OUT_CHANNELS 64 for 18/34, 256 else). */
export function stageSpec(depth: ResNetDepth, stage: StageName): StageSpec {
  const i = STAGES.indexOf(stage);
  const basic = depth < 50;
  const out = (basic ? 64 : 256) << i;
  const inC = i === 0 ? 64 : (basic ? 64 : 256) << (i - 1);
  return { inChannels: inC, outChannels: out, bottleneck: 64 << i, blocks: BLOCKS[depth][i], stride: i === 0 ? 1 : 2 };
}

/** One stage as Detectron2 builds it: the first block carries the stride and the shortcut. */
export function makeStage(depth: ResNetDepth, stage: StageName, norm: NormFactory = batchNorm2d): Sequential {
  const s = stageSpec(depth, stage);
  const seq = new Sequential();
  for (let b = 0; b < s.blocks; b++) {
    const inC = b === 0 ? s.inChannels : s.outChannels;
    const stride = b === 0 ? s.stride : 1;
    seq.append(depth < 50 ? new BasicBlock(inC, s.outChannels, stride, norm) : new BottleneckBlock(inC, s.outChannels, s.bottleneck, stride, norm));
  }
  return seq;
}

/**
 * Initialisation of RECIPE.md for a ResNet (sub)network: every norm gamma 1 and beta 0, then the
 * last norm gamma of each residual block 0 (the block starts as identity). Conv weights are
 * already normal(0, sqrt(2/(k*k*C_out))) from ConvNorm.
 */
export function initResNetNorms(m: Module): void {
  for (const mod of m.modules()) {
    if (mod instanceof ConvNorm && mod.norm?.weight) { ones_(mod.norm.weight); zeros_(mod.norm.bias!); }
  }
  for (const mod of m.modules()) {
    if (mod instanceof BasicBlock || mod instanceof BottleneckBlock) {
      const n = mod.lastNorm as ConvNorm['norm'];
      if (n?.weight) zeros_(n.weight);
    }
  }
}

export interface ResNetOptions {
  depth: ResNetDepth;
  /** The last stage to build: 'res5' (C2..C5) or 'res4' (stop at C4, for the C4 variant). */
  lastStage?: 'res4' | 'res5';
  norm?: NormFactory;
}

/**
 * The ResNet body: stem + res2..res5 (or res2..res4). forward([N, 3, H, W]) returns the stage
 * outputs C2..C5 by name: res2 [N, C2, H/4, W/4] ... res5 [N, C5, H/32, W/32] (sizes rounded up
 * by the convs' padding). Channels: R18/34 64/128/256/512, R50/101 256/512/1024/2048.
 */
export class ResNet extends Module {
  declare readonly stem: BasicStem;
  readonly depth: ResNetDepth;
  readonly stageNames: StageName[];

  constructor(o: ResNetOptions) {
    super();
    if (!(o.depth in BLOCKS)) throw new TypeError(`ResNet: depth must be 18, 34, 50 or 101, got ${o.depth}`);
    const last = o.lastStage ?? 'res5';
    if (last !== 'res4' && last !== 'res5') throw new TypeError(`ResNet: lastStage must be 'res4' or 'res5', got '${last}'`);
    this.depth = o.depth;
    const norm = o.norm ?? batchNorm2d;
    this.registerModule('stem', new BasicStem(3, 64, norm));
    this.stageNames = STAGES.slice(0, last === 'res5' ? 4 : 3);
    for (const s of this.stageNames) this.registerModule(s, makeStage(o.depth, s, norm));
    initResNetNorms(this);
  }

  stage(name: StageName): Sequential {
    if (!this.stageNames.includes(name)) throw new RangeError(`ResNet.stage: '${name}' is not built (stages: ${this.stageNames.join(', ')})`);
    return (this as unknown as Record<string, Sequential>)[name];
  }

  /** Output channels of a stage's features. */
  channels(name: StageName): number { return stageSpec(this.depth, name).outChannels; }

  forward(x: Tensor): Partial<Record<StageName, Tensor>> {
    if (x.ndim !== 4 || x.size(1) !== 3) throw new TypeError(`ResNet.forward: images must be [N, 3, H, W], got [${x.shape}]`);
    return tidy(() => {
      const out: Partial<Record<StageName, Tensor>> = {};
      let y = this.stem.forward(x);
      for (const s of this.stageNames) {
        const next = this.stage(s).forward(y);
        out[s] = next;
        y = next;
      }
      return out;
    });
  }
}
