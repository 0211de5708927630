// Feature pyramid network in Detectron2's layout (modeling/backbone/fpn.py): `bottom_up` is the
// ResNet, `fpn_lateral{2..5}` 1x1 convs and `fpn_output{2..5}` 3x3 convs, each with its norm and
// no bias (RECIPE.md: BN in lateral and output convs, no activation). No P6: SoCo pools on P2..P5.
import { Tensor, interpolate, tidy } from '../torch';
import { Module } from '../nn';
import { ConvNorm, NormFactory, batchNorm2d } from './conv_norm';
import { ResNet, ResNetDepth, STAGES, StageName } from './resnet';

export type Level = 'p2' | 'p3' | 'p4' | 'p5';
export const LEVELS: Level[] = ['p2', 'p3', 'p4', 'p5'];
export const LEVEL_STRIDES = [4, 8, 16, 32];

export interface FPNOptions { depth: ResNetDepth; outChannels?: number; norm?: NormFactory }

/**
 * forward([N, 3, H, W]) -> { p2: [N, 256, H/4, W/4], p3 (H/8), p4 (H/16), p5 (H/32) }.
 * Top-down: nearest upsampling to the lateral's own size (not a fixed factor 2, so inputs that
 * are not multiples of 32, like the 112-pixel V3, work as in the authors' mmcv FPN), summed with
 * the lateral, then the 3x3 output conv.
 */
export class FPN extends Module {
  declare readonly bottom_up: ResNet;
  readonly outChannels: number;

  constructor(o: FPNOptions) {
    super();
    const norm = o.norm ?? batchNorm2d;
    this.outChannels = o.outChannels ?? 256;
    const bottomUp = new ResNet({ depth: o.depth, lastStage: 'res5', norm });
    STAGES.forEach((s, i) => {
      this.registerModule(`fpn_lateral${i + 2}`, new ConvNorm(bottomUp.channels(s), this.outChannels, 1, { norm }));
      this.registerModule(`fpn_output${i + 2}`, new ConvNorm(this.outChannels, this.outChannels, 3, { padding: 1, norm }));
    });
    this.registerModule('bottom_up', bottomUp);
  }

  lateral(i: number): ConvNorm { return (this as unknown as Record<string, ConvNorm>)[`fpn_lateral${i + 2}`]; }
  output(i: number): ConvNorm { return (this as unknown as Record<string, ConvNorm>)[`fpn_output${i + 2}`]; }

  forward(x: Tensor): Record<Level, Tensor> {
    return tidy(() => {
      const c = this.bottom_up.forward(x);
      const feats = STAGES.map((s: StageName) => c[s]!);
      const out: Tensor[] = new Array(4);
      let prev = this.lateral(3).forward(feats[3]);
      out[3] = this.output(3).forward(prev);
      for (let i = 2; i >= 0; i--) {
        const lat = this.lateral(i).forward(feats[i]);
        const [h, w] = lat.shape.slice(2);
        prev = lat.add_(interpolate(prev, { size: [h, w], mode: 'nearest' }));
        out[i] = this.output(i).forward(prev);
      }
      return { p2: out[0], p3: out[1], p4: out[2], p5: out[3] };
    });
  }
}
