// TorchScript export of the online network's feature extractor: the ResNet (+FPN) as a
// torch.jit module that Python (torch.jit.load) and C++ (torch::jit::load) run without soco-train.
// Each module here becomes a TorchScript module of the same name, holding the same parameters and
// BN buffers under the same names (its state_dict keys are the Detectron2 export's), with its
// forward written as TorchScript source; native/torchscript.cc compiles and saves the tree.
//
// forward(images [N, 3, H, W], RGB normalised with the ImageNet mean/std as in training) returns
// a Dict[str, Tensor]: p2..p5 for the FPN arch; res2..res5 without the FPN, and for C4 (whose res5
// is the RoI head's stage, run here on the whole C4 map; res2..res4 when it was trained without).
// BatchNorm always uses the checkpoint's running statistics (frozen, as Detectron2's FrozenBN).
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../torch/native';
import { tempPathFor } from '../io/temp_files';
import { BatchNorm, Module, Sequential } from '../nn';
import { ConvNorm } from './conv_norm';
import { FPN } from './fpn';
import { BasicBlock, BasicStem, BottleneckBlock, ResNet } from './resnet';
import { Res5ROIHeads } from './res5_head';
import { SoCoNetwork } from './encoder';
import { SoCoModel } from './soco';

/** A module as native/torchscript.cc builds it: tensors by handle, methods as TorchScript source. */
export interface ScriptModuleSpec {
  type: string;
  parameters: [string, number][];
  buffers: [string, number][];
  children: [string, ScriptModuleSpec][];
  methods: string;
}

const list = (v: readonly number[]): string => `[${v.join(', ')}]`;
/** A Python float literal (TorchScript needs the '.' or exponent to read a float). */
const float = (v: number): string => (Number.isInteger(v) ? `${v}.0` : String(v));

function spec(m: Module, type: string, methods: string[], children: [string, ScriptModuleSpec][] = []): ScriptModuleSpec {
  return {
    type: `__torch__.soco_train.${type}`,
    parameters: m.namedParameters('', false).map(([n, t]) => [n, t.id]),
    buffers: m.namedBuffers('', false).map(([n, t]) => [n, t.id]),
    children,
    methods: methods.map((l) => `${l}\n`).join(''),
  };
}

function batchNorm(m: BatchNorm): ScriptModuleSpec {
  return spec(m, 'BatchNorm2d', [
    'def forward(self, x: Tensor) -> Tensor:',
    `    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, False, 0.0, ${float(m.eps)}, True)`,
  ]);
}

function convNorm(m: ConvNorm): ScriptModuleSpec {
  const lines = [
    'def forward(self, x: Tensor) -> Tensor:',
    `    x = torch.conv2d(x, self.weight, ${m.bias ? 'self.bias' : 'None'}, ${list(m.stride)}, ${list(m.padding)}, ${list(m.dilation)}, ${m.groups})`,
  ];
  if (m.norm) lines.push('    x = self.norm.forward(x)');
  if (m.relu) lines.push('    x = torch.relu(x)');
  lines.push('    return x');
  return spec(m, 'Conv2d', lines, m.norm ? [['norm', batchNorm(m.norm)]] : []);
}

function stem(m: BasicStem): ScriptModuleSpec {
  return spec(m, 'BasicStem', [
    'def forward(self, x: Tensor) -> Tensor:',
    '    return torch.max_pool2d(self.conv1.forward(x), [3, 3], [2, 2], [1, 1], [1, 1], False)',
  ], [['conv1', convNorm(m.conv1)]]);
}

function block(m: BasicBlock | BottleneckBlock): ScriptModuleSpec {
  const convs = m instanceof BottleneckBlock ? [m.conv1, m.conv2, m.conv3] : [m.conv1, m.conv2];
  const children: [string, ScriptModuleSpec][] = convs.map((c, i) => [`conv${i + 1}`, convNorm(c)]);
  if (m.shortcut) children.push(['shortcut', convNorm(m.shortcut)]);
  return spec(m, m instanceof BottleneckBlock ? 'BottleneckBlock' : 'BasicBlock', [
    'def forward(self, x: Tensor) -> Tensor:',
    `    out = ${convs.reduce((e, _c, i) => `self.conv${i + 1}.forward(${e})`, 'x')}`,
    `    return torch.relu(out + ${m.shortcut ? 'self.shortcut.forward(x)' : 'x'})`,
  ], children);
}

/** A ResNet stage: blocks named 0, 1, ... as in the state dict (getattr reaches names that are numbers). */
function stage(m: Sequential): ScriptModuleSpec {
  const blocks = [...m.namedChildren()] as [string, BasicBlock | BottleneckBlock][];
  return spec(m, 'ResNetStage', [
    'def forward(self, x: Tensor) -> Tensor:',
    ...blocks.map(([n]) => `    x = getattr(self, "${n}").forward(x)`),
    '    return x',
  ], blocks.map(([n, b]) => [n, block(b)]));
}

function resnet(m: ResNet): ScriptModuleSpec {
  return spec(m, 'ResNet', [
    'def forward(self, x: Tensor) -> Dict[str, Tensor]:',
    '    x = self.stem.forward(x)',
    ...m.stageNames.map((s) => `    ${s} = self.${s}.forward(x)\n    x = ${s}`),
    `    return {${m.stageNames.map((s) => `"${s}": ${s}`).join(', ')}}`,
  ], [['stem', stem(m.stem)], ...m.stageNames.map((s): [string, ScriptModuleSpec] => [s, stage(m.stage(s))])]);
}

/** Top-down as FPN.forward: nearest upsampling to each lateral's own size, then the output conv. */
function fpn(m: FPN): ScriptModuleSpec {
  const lines = [
    'def forward(self, x: Tensor) -> Dict[str, Tensor]:',
    '    c = self.bottom_up.forward(x)',
    '    prev = self.fpn_lateral5.forward(c["res5"])',
    '    p5 = self.fpn_output5.forward(prev)',
  ];
  for (const i of [4, 3, 2]) {
    lines.push(
      `    lat = self.fpn_lateral${i}.forward(c["res${i}"])`,
      '    prev = lat + torch.upsample_nearest2d(prev, [lat.size(2), lat.size(3)], None)',
      `    p${i} = self.fpn_output${i}.forward(prev)`,
    );
  }
  lines.push('    return {"p2": p2, "p3": p3, "p4": p4, "p5": p5}');
  const children: [string, ScriptModuleSpec][] = [['bottom_up', resnet(m.bottom_up)]];
  for (let i = 0; i < 4; i++) children.push([`fpn_lateral${i + 2}`, convNorm(m.lateral(i))], [`fpn_output${i + 2}`, convNorm(m.output(i))]);
  return spec(m, 'FPN', lines, children);
}

/** The feature extractor of a network: `backbone` (+ `roi_heads.res5` for C4 with its head). */
export function featureExtractorSpec(model: SoCoModel | SoCoNetwork): ScriptModuleSpec {
  const net = model instanceof SoCoModel ? model.online : model;
  const backbone = net.backbone instanceof FPN ? fpn(net.backbone) : resnet(net.backbone);
  const top: ScriptModuleSpec = { type: '__torch__.soco_train.SoCoFeatures', parameters: [], buffers: [], children: [['backbone', backbone]], methods: '' };
  if (net.roi_heads instanceof Res5ROIHeads) {
    // Only the stage: the RoI pooler has no place in a whole-image feature extractor.
    top.children.push(['roi_heads', spec(net.roi_heads, 'Res5ROIHeads', [], [['res5', stage(net.roi_heads.res5)]])]);
    top.methods = [
      'def forward(self, images: Tensor) -> Dict[str, Tensor]:',
      '    out = self.backbone.forward(images)',
      '    out["res5"] = self.roi_heads.res5.forward(out["res4"])',
      '    return out',
    ].join('\n') + '\n';
  } else {
    top.methods = 'def forward(self, images: Tensor) -> Dict[str, Tensor]:\n    return self.backbone.forward(images)\n';
  }
  return top;
}

/** The names forward() returns, in order. */
export function featureNames(model: SoCoModel | SoCoNetwork): string[] {
  const net = model instanceof SoCoModel ? model.online : model;
  if (net.backbone instanceof FPN) return ['p2', 'p3', 'p4', 'p5'];
  const names: string[] = [...net.backbone.stageNames];
  if (net.roi_heads instanceof Res5ROIHeads) names.push('res5');
  return names;
}

/** Writes the TorchScript feature extractor of `model` to `file` (atomically, as save()). */
export function saveTorchScript(model: SoCoModel | SoCoNetwork, file: string): { file: string; outputs: string[] } {
  const out = path.resolve(file);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = tempPathFor(out);  // named so that the next export removes it if this one is killed
  try {
    native.saveTorchScript(tmp, featureExtractorSpec(model));
    fs.renameSync(tmp, out);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return { file: out, outputs: featureNames(model) };
}
