// `soco-train export`: a training checkpoint's ONLINE detector weights for Detectron2, as a
// torch.load-able .pth (PyTorch zip, readable with weights_only=True) or Detectron2's own .pkl,
// plus the Detectron2 config keys (and optionally a ready YAML) to fine-tune with; or, with
// --format torchscript, its feature extractor as a TorchScript module (lib/model/torchscript.ts).
import { Command, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, load, save } from '../torch';
import { StateDict } from '../nn';
import { checkOutputPath } from '../io/output_path';
import { describeRemoved, removeStaleTemps, writeFileAtomic } from '../io/temp_files';
import {
  Detectron2Arch, Detectron2Export, SoCoModel, SoCoNetwork, SoCoNetworkOptions, detectron2Pickle, detectron2Yaml, exportDetectron2,
} from '../model';
import { IMAGENET_MEAN, IMAGENET_STD } from '../data/augment';
import { saveTorchScript } from '../model/torchscript';

/** The online network's entries of a checkpoint, without the 'online.' prefix. */
function onlineStateOf(ckpt: unknown, file: string): StateDict {
  if (!ckpt || typeof ckpt !== 'object' || ckpt instanceof Tensor) throw new Error(`${file} does not hold a dict of tensors`);
  const obj = ckpt as Record<string, unknown>;
  // A soco-train training checkpoint ({format, online: {'online.*', 'predictor.*'}, target, ...}),
  // a SoCoModel state dict ('online.*' at the top) or a bare SoCoNetwork state dict.
  const flat = (obj.online && typeof obj.online === 'object' && !(obj.online instanceof Tensor) ? obj.online : obj) as Record<string, unknown>;
  const out: StateDict = {};
  for (const [k, v] of Object.entries(flat)) {
    if (!(v instanceof Tensor)) continue;
    if (k.startsWith('online.')) out[k.slice(7)] = v;
    else if (k.startsWith('backbone.') || k.startsWith('roi_heads.') || k.startsWith('projector.')) out[k] = v;
  }
  if (!Object.keys(out).some((k) => k.startsWith('backbone.')))
    throw new Error(`${file} has no online network weights (expected keys 'online.backbone.*' of a soco-train checkpoint)`);
  return out;
}

/** The network layout a state dict was trained with, read off its keys. */
export function inferNetworkOptions(sd: StateDict): Partial<SoCoNetworkOptions> {
  const fpn = 'backbone.fpn_lateral2.weight' in sd;
  const c4 = 'roi_heads.res5.0.conv1.weight' in sd || (!fpn && !Object.keys(sd).some((k) => /^backbone\.res5\./.test(k)));
  const body = fpn ? 'backbone.bottom_up.' : 'backbone.';
  const blocks = new Set(Object.keys(sd).filter((k) => k.startsWith(`${body}res4.`)).map((k) => k.split('.')[fpn ? 3 : 2]));
  const bottleneck = `${body}res2.0.conv3.weight` in sd;
  const depth = blocks.size === 2 ? 18 : blocks.size === 23 ? 101 : blocks.size === 6 ? (bottleneck ? 50 : 34) : NaN;
  if (!Number.isFinite(depth)) throw new Error(`cannot tell the ResNet depth: ${blocks.size} res4 blocks`);
  const head = c4 ? 'roi_heads.res5.0.conv1.weight' in sd : 'roi_heads.box_head.fc1.weight' in sd;
  return c4 ? { arch: 'c4', depth: depth as 18, head } : { arch: 'fpn', depth: depth as 18, fpn, head };
}

export interface ExportFileResult extends Detectron2Export { weights: string; yaml?: string }

/**
 * Writes the Detectron2 export of `model` (a SoCoModel or its online SoCoNetwork) to `out`
 * (format from the extension unless given: .pkl = Detectron2 pickle, else PyTorch zip), and the
 * fine-tuning YAML to `yaml` when given.
 */
export function writeDetectron2Export(model: SoCoModel | SoCoNetwork, out: string,
  o: { arch?: Detectron2Arch; format?: 'pth' | 'pkl'; yaml?: string } = {}): ExportFileResult {
  const exp = exportDetectron2(model, o.arch);
  const format = o.format ?? (/\.pkl$/i.test(out) ? 'pkl' : 'pth');
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  // Atomic, as save() is: a crash never leaves a truncated file under the final name.
  if (format === 'pkl') writeFileAtomic(out, detectron2Pickle(exp.checkpoint));
  else save(out, { ...exp.checkpoint });
  const net = model instanceof SoCoModel ? model.online : model;
  if (o.yaml) writeFileAtomic(o.yaml, detectron2Yaml(exp.arch, path.resolve(out), net.options.depth));
  return { ...exp, weights: path.resolve(out), yaml: o.yaml ? path.resolve(o.yaml) : undefined };
}

/**
 * Runs `fn` on the online network of a soco-train checkpoint, its detector part loaded, once the
 * output paths are known to be writable (an interrupted export's temporary files are removed, with
 * a note to `log`).
 */
function withCheckpointNetwork<T>(checkpoint: string, o: { out: string; yaml?: string; log?: (m: string) => void }, fn: (net: SoCoNetwork) => T): T {
  checkOutputPath(o.out, { flag: '--out', kind: 'file' });
  if (o.yaml) checkOutputPath(o.yaml, { flag: '--config-out', kind: 'file' });
  const note = describeRemoved(removeStaleTemps(path.dirname(path.resolve(o.out)), o.out));
  if (note) o.log?.(note);
  if (!fs.existsSync(checkpoint)) throw new Error(`--checkpoint ${checkpoint}: no such file`);
  const ckpt = load(checkpoint);
  try {
    const sd = onlineStateOf(ckpt, checkpoint);
    const net = new SoCoNetwork(inferNetworkOptions(sd));
    // Only the detector part is exported: load exactly it, every key checked by name and shape.
    for (const part of ['backbone', 'roi_heads'] as const) {
      const sub: StateDict = {};
      for (const [k, v] of Object.entries(sd)) if (k.startsWith(`${part}.`)) sub[k.slice(part.length + 1)] = v;
      net[part].loadStateDict(sub, true);
    }
    return fn(net);
  } finally {
    disposeAll(ckpt);
  }
}

/** Reads a soco-train checkpoint and exports its online network for Detectron2 (the `export` command); notes go to `log`. */
export function exportCheckpoint(checkpoint: string, out: string,
  o: { arch?: Detectron2Arch; format?: 'pth' | 'pkl'; yaml?: string; log?: (m: string) => void } = {}): ExportFileResult {
  return withCheckpointNetwork(checkpoint, { out, yaml: o.yaml, log: o.log }, (net) => writeDetectron2Export(net, out, o));
}

/** Reads a soco-train checkpoint and writes its feature extractor as TorchScript (`export --format torchscript`). */
export function exportTorchScript(checkpoint: string, out: string): { file: string; outputs: string[] } {
  return withCheckpointNetwork(checkpoint, { out }, (net) => saveTorchScript(net, out));
}

function disposeAll(v: unknown): void {
  if (v instanceof Tensor) v.dispose();
  else if (Array.isArray(v)) v.forEach(disposeAll);
  else if (v instanceof Map) v.forEach(disposeAll);
  else if (v && typeof v === 'object') Object.values(v).forEach(disposeAll);
}

/** The config keys as Detectron2 command-line overrides (KEY VALUE ...). */
export function formatConfigKeys(cfg: Detectron2Export['config']): string {
  const val = (v: string | number | boolean | number[]): string =>
    Array.isArray(v) ? `"[${v.join(', ')}]"` : typeof v === 'boolean' ? (v ? 'True' : 'False') : String(v);
  return Object.entries(cfg).map(([k, v]) => `  ${k} ${val(v)}`).join('\n');
}

/** What `export --format torchscript` prints: the file, how to load it, and its input and outputs. */
function describeTorchScript(r: { file: string; outputs: string[] }): string {
  const tuple = (v: number[]): string => `(${v.join(', ')})`;
  return [
    `wrote ${r.file} (TorchScript feature extractor, BatchNorm with the checkpoint's statistics)`,
    `  load: torch.jit.load('${r.file}') in Python, torch::jit::load("${r.file}") in C++; neither needs soco-train`,
    `  forward(images): float [N, 3, H, W] RGB in [0, 1] normalised with mean ${tuple(IMAGENET_MEAN)} and std ${tuple(IMAGENET_STD)}`,
    `    -> Dict[str, Tensor] ${r.outputs.join(', ')}`,
    '  to fine-tune in Detectron2, export --format pth or pkl instead (MODEL.WEIGHTS)',
  ].join('\n');
}

type ExportFormat = 'pth' | 'pkl' | 'torchscript';

export function registerExportCommand(program: Command): void {
  program.command('export')
    .description("write a checkpoint's online detector weights for Detectron2 (MODEL.WEIGHTS) and print the config keys, or its feature extractor as TorchScript")
    .requiredOption('--checkpoint <file>', 'soco-train training checkpoint (e.g. RUN/last.pth)')
    .requiredOption('--out <file>', 'output: .pth (torch.load, weights_only=True) or .pkl (Detectron2 pickle); with --format torchscript a torch.jit.load-able file')
    .addOption(new Option('--arch <arch>', 'Detectron2 architecture to export to (default: the one trained)').choices(['fpn', 'c4']))
    .addOption(new Option('--format <format>', 'pth, pkl (Detectron2 weights; default: from the --out extension) or torchscript (feature extractor for deployment)').choices(['pth', 'pkl', 'torchscript']))
    .option('--config-out <file>', 'also write a ready Detectron2 YAML config (Mask R-CNN 1x) pointing at --out')
    .action((opts: { checkpoint: string; out: string; arch?: Detectron2Arch; format?: ExportFormat; configOut?: string }) => {
      if (opts.format === 'torchscript') {
        if (opts.arch) throw new Error('--arch chooses a Detectron2 layout: it does not apply to --format torchscript (the module is the network as trained)');
        if (opts.configOut) throw new Error('--config-out writes a Detectron2 config: it does not apply to --format torchscript');
        console.log(describeTorchScript(exportTorchScript(opts.checkpoint, opts.out)));
        return;
      }
      const r = exportCheckpoint(opts.checkpoint, opts.out, { arch: opts.arch, format: opts.format, yaml: opts.configOut, log: (m) => console.log(`export: ${m}`) });
      const n = Object.keys(r.checkpoint.model).length;
      const lines = [
        `wrote ${r.weights} (${n} tensors, Detectron2 ${r.arch === 'fpn' ? 'R-FPN' : 'R-C4'})`,
        `  included: ${r.included.join('; ')}`,
        `  not included (Detectron2 initialises): ${r.omitted.join('; ')}`,
        `Detectron2 config keys${r.config['MODEL.RESNETS.DEPTH'] === 50 ? ` (configs/detectron2/mask_rcnn_R_50_${r.arch === 'fpn' ? 'FPN' : 'C4'}_1x_soco.yaml has them all)` : ''}:`,
        `  MODEL.WEIGHTS ${r.weights}`,
        formatConfigKeys(r.config),
      ];
      if (r.yaml) lines.push(`config: ${r.yaml}`);
      console.log(lines.join('\n'));
    });
}
