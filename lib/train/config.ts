// Training configuration: one flat, typed record. Every key has a documented default equal to the
// paper (R50-FPN, K=4, batch 2048, 100 epochs, base lr 1.0, ...), every key is a CLI flag
// (--kebab-case), and every ablation of the paper's Tables 4 and 5 is a key.
// Layering: defaults < presets (in the order given) < config file (JSON or YAML) < flags.
import * as fs from 'fs';
import * as path from 'path';
import { parse as parseYamlText } from 'yaml';
import type { SoCoNetworkOptions } from '../model/encoder';
import { DEVICE_CHOICES, isDeviceChoice } from '../torch/dtype';

export type ProposalSource = 'selective-search' | 'random' | 'whole-image';
export type Precision = 'auto' | 'fp32' | 'bf16' | 'fp16';
export type LossNormalization = 'paper' | 'authors';

/** The network's options (arch, depth and Table 4's fpn/head/scaleAware switches) are keys too. */
export interface TrainConfig extends SoCoNetworkOptions {
  // ---- data and run ----
  /** Folder of training images (searched recursively). */
  images: string;
  /** Proposal store made by `soco-train proposals` for the same images. Unused for proposalSource random/whole-image. */
  proposals: string;
  /** Train with a damaged proposal store: its damaged records count as absent (those images use the whole image). */
  skipDamagedProposals: boolean;
  /** Output folder: checkpoints, metrics.jsonl, TensorBoard events (tb/), config.json, Detectron2 export. */
  out: string;
  /** auto (CUDA when available), cpu, cuda or cuda:N. */
  device: string;
  /** auto = bf16 autocast on CUDA, fp32 on CPU. */
  precision: Precision;
  seed: number;
  /** Images the loader decodes at once (decode threads). */
  workers: number;
  /** Batches prepared ahead of the training step. */
  prefetch: number;
  /** Log (progress line + metrics.jsonl) every N iterations. */
  logEvery: number;
  /** Checkpoint every N iterations (0: none besides epoch ends and the end). */
  checkpointEvery: number;
  /** Checkpoint at the end of every N-th epoch (0: not at epoch ends; the authors' save_freq). */
  checkpointEveryEpochs: number;
  /** Numbered checkpoints kept besides OUT/last.pth. */
  keepCheckpoints: number;
  /** 'auto': continue from OUT/last.pth when it exists; 'must': the same but fail without one; 'never': start fresh (refuses a folder with one); or a checkpoint path. */
  resume: string;
  /** Total iterations of the run (schedules included); 0 = epochs x iterations per epoch. */
  maxIters: number;
  /** Seconds each process of a multi-process job waits for all the others at the start. */
  rendezvousTimeout: number;

  // ---- model (plus the SoCoNetworkOptions it extends) ----
  /** Synchronized BatchNorm across processes (multi-GPU only). */
  syncBN: boolean;

  // ---- views and proposals ----
  /** Table 5(c): proposals per image. */
  k: number;
  /** Table 4 "Whole image" / Table 5(c) "Random": where the boxes come from. */
  proposalSource: ProposalSource;
  /** Table 4 "Box jitter". */
  jitter: boolean;
  jitterProb: number;
  jitterRange: number;
  /** Table 4 "Multi view": use V3 (false: V1 and V2 only). */
  multiView: boolean;
  v1Size: number;
  v2Size: number;
  /** Table 5(a): V3 resolution. */
  v3Size: number;
  /** SoCo*: a fourth view. */
  socoStar: boolean;
  v4Size: number;
  cropScale: [number, number];
  cropRatio: [number, number];
  /** Authors: V2 is a crop of the raw image (paper: of V1). */
  cropFromRaw: boolean;
  /** 'paper': V3 = V2 downsampled; 'official': V3 an independent crop (SoCo*: V3 at 192, V4 = V2 at 112). */
  viewLayout: 'paper' | 'official';
  /** Authors: proposals that intersect a crop are kept and clipped (paper: dropped unless inside). */
  keepClipped: boolean;
  /** 'official': the authors' box pipeline (lib/data/views_geometry.ts sampleOfficialViews):
   * inclusive pixel boxes, a proposal draw per view pair, each view padded on its own, the loss
   * pairing every two slots with the same proposal id, levels from integer boxes. Needs
   * cropFromRaw and keepClipped. 'paper': continuous boxes, one draw, rows paired. */
  boxPipeline: 'paper' | 'official';
  flipProb: number;

  // ---- optimisation ----
  /** Table 5(b): global batch size (all processes). */
  batchSize: number;
  epochs: number;
  /** lr = baseLr * batchSize / 256. */
  baseLr: number;
  weightDecay: number;
  momentum: number;
  trustCoefficient: number;
  warmupEpochs: number;
  /** Warmup starts at lr * factor (paper 0; authors 1/100). */
  warmupStartFactor: number;
  /** Cosine floor (paper ~0; authors 1e-6). */
  minLr: number;
  /** Table 5(d): initial target momentum (cosine to 1). */
  tau0: number;
  lossNormalization: LossNormalization;
}

/** The network part of a configuration (fpn applies to arch fpn only). */
export function networkOptions(c: TrainConfig): Partial<SoCoNetworkOptions> {
  return {
    arch: c.arch, depth: c.depth, fpn: c.arch === 'fpn' ? c.fpn : undefined, head: c.head, scaleAware: c.scaleAware,
    singleLevel: c.singleLevel, poolAllLevels: c.poolAllLevels, levelThresholds: c.levelThresholds, poolerScale: c.poolerScale,
    projectorHidden: c.projectorHidden, predictorHidden: c.predictorHidden, embedDim: c.embedDim,
  };
}

type Kind = 'string' | 'device' | 'int' | 'number' | 'bool' | 'pair' | 'triple' | readonly string[] | readonly number[];
interface Field { kind: Kind; help: string; min?: number; max?: number }

/** Paper defaults (RECIPE.md). */
export const DEFAULT_CONFIG: Readonly<TrainConfig> = Object.freeze({
  images: '', proposals: '', skipDamagedProposals: false, out: 'soco-run', device: 'auto', precision: 'auto', seed: 0, workers: 4, prefetch: 2,
  logEvery: 20, checkpointEvery: 1000, checkpointEveryEpochs: 1, keepCheckpoints: 3, resume: 'auto', maxIters: 0,
  rendezvousTimeout: 600, arch: 'fpn', depth: 50, fpn: true, head: true, scaleAware: true, singleLevel: 0, poolAllLevels: false,
  levelThresholds: [48, 96, 192], poolerScale: 'stride', projectorHidden: 4096, predictorHidden: 4096, embedDim: 256, syncBN: true,
  k: 4, proposalSource: 'selective-search', jitter: true, jitterProb: 0.5, jitterRange: 0.1, multiView: true,
  v1Size: 224, v2Size: 224, v3Size: 112, socoStar: false, v4Size: 192, cropScale: [0.5, 1], cropRatio: [3 / 4, 4 / 3],
  cropFromRaw: false, viewLayout: 'paper', keepClipped: false, boxPipeline: 'paper', flipProb: 0.5,
  batchSize: 2048, epochs: 100, baseLr: 1.0, weightDecay: 1e-5, momentum: 0.9, trustCoefficient: 0.001,
  warmupEpochs: 10, warmupStartFactor: 0, minLr: 0, tau0: 0.99, lossNormalization: 'paper',
} as TrainConfig);

export const CONFIG_FIELDS: { readonly [K in keyof TrainConfig]: Field } = {
  images: { kind: 'string', help: 'folder of training images' },
  proposals: { kind: 'string', help: 'proposal store for those images (soco-train proposals)' },
  skipDamagedProposals: { kind: 'bool', help: 'train on a damaged proposal store: damaged records count as absent (whole-image boxes) instead of refusing it' },
  out: { kind: 'string', help: 'output folder' },
  device: { kind: 'device', help: 'training device (one process; a job puts each process on its own GPU)' },
  precision: { kind: ['auto', 'fp32', 'bf16', 'fp16'], help: 'auto: bf16 autocast on CUDA, fp32 on CPU' },
  seed: { kind: 'int', min: 0, help: 'random seed' },
  workers: { kind: 'int', min: 1, max: 1024, help: 'images decoded at once (decode threads)' },
  prefetch: { kind: 'int', min: 1, help: 'batches prepared ahead' },
  logEvery: { kind: 'int', min: 1, help: 'log every N iterations' },
  checkpointEvery: { kind: 'int', min: 0, help: 'checkpoint every N iterations (0: none besides epoch ends and the end)' },
  checkpointEveryEpochs: { kind: 'int', min: 0, help: 'checkpoint at the end of every N-th epoch (0: not at epoch ends)' },
  keepCheckpoints: { kind: 'int', min: 1, help: 'numbered checkpoints to keep besides last.pth' },
  resume: { kind: 'string', help: "'auto' (OUT/last.pth if present), 'must' (fail without one), 'never' (refuse a folder with one), or a checkpoint path" },
  maxIters: { kind: 'int', min: 0, help: 'total iterations, schedules included (0: epochs x iterations per epoch)' },
  rendezvousTimeout: { kind: 'number', min: 1, help: 'seconds every process of a multi-process job waits for the others at the start' },
  arch: { kind: ['fpn', 'c4'], help: 'R50-FPN or R50-C4 variant' },
  depth: { kind: [18, 34, 50, 101], help: 'ResNet depth' },
  fpn: { kind: 'bool', help: 'Table 4: pretrain the FPN' },
  head: { kind: 'bool', help: 'Table 4: pretrain the R-CNN head' },
  scaleAware: { kind: 'bool', help: 'Table 4: scale-aware FPN level assignment' },
  singleLevel: { kind: 'int', min: 0, max: 3, help: 'level (0=P2..3=P5) for every box when scaleAware is false' },
  poolAllLevels: { kind: 'bool', help: "authors' code: pool every box on all levels, mask the loss" },
  levelThresholds: { kind: 'triple', min: 0, help: 'FPN level thresholds on sqrt(w*h), e.g. 48,96,192' },
  poolerScale: { kind: ['stride', 'map'], help: "RoIAlign scale per feature map: 1/stride, or (authors' code) the map's size over the view's" },
  projectorHidden: { kind: 'int', min: 1, help: 'projector hidden width' },
  predictorHidden: { kind: 'int', min: 1, help: 'predictor hidden width' },
  embedDim: { kind: 'int', min: 1, help: 'embedding width' },
  syncBN: { kind: 'bool', help: 'synchronized BatchNorm across processes' },
  k: { kind: 'int', min: 1, help: 'Table 5(c): proposals per image' },
  proposalSource: { kind: ['selective-search', 'random', 'whole-image'], help: 'Table 4/5(c): proposal source' },
  jitter: { kind: 'bool', help: 'Table 4: box jitter' },
  jitterProb: { kind: 'number', min: 0, max: 1, help: 'probability of jittering a box' },
  jitterRange: { kind: 'number', min: 0, max: 1, help: 'jitter magnitude r ~ U[-range, range]' },
  multiView: { kind: 'bool', help: 'Table 4: use V3' },
  v1Size: { kind: 'int', min: 16, help: 'V1 size' },
  v2Size: { kind: 'int', min: 16, help: 'V2 size' },
  v3Size: { kind: 'int', min: 16, help: 'Table 5(a): V3 size' },
  socoStar: { kind: 'bool', help: 'SoCo*: add V4' },
  v4Size: { kind: 'int', min: 16, help: 'V4 size (SoCo*)' },
  cropScale: { kind: 'pair', min: 0, max: 1, help: 'random crop area scale, e.g. 0.5,1' },
  cropRatio: { kind: 'pair', min: 0, help: 'random crop aspect range, e.g. 0.75,1.3333' },
  cropFromRaw: { kind: 'bool', help: "authors' code: crop V2 from the raw image" },
  viewLayout: { kind: ['paper', 'official'], help: 'V3/V4 construction' },
  keepClipped: { kind: 'bool', help: "authors' code: keep proposals that intersect a crop, clipped" },
  boxPipeline: { kind: ['paper', 'official'], help: "authors' code: inclusive boxes, a draw per view pair, per-view padding, proposal-id loss pairing, levels from integer boxes" },
  flipProb: { kind: 'number', min: 0, max: 1, help: 'horizontal flip probability per view' },
  batchSize: { kind: 'int', min: 1, help: 'Table 5(b): global batch size' },
  epochs: { kind: 'int', min: 1, help: 'epochs' },
  baseLr: { kind: 'number', min: 0, help: 'base lr (scaled by batch/256)' },
  weightDecay: { kind: 'number', min: 0, help: 'weight decay (tensors with >= 2 dims)' },
  momentum: { kind: 'number', min: 0, max: 1, help: 'SGD momentum' },
  trustCoefficient: { kind: 'number', min: 0, help: 'LARS trust coefficient' },
  warmupEpochs: { kind: 'number', min: 0, help: 'linear warmup epochs' },
  warmupStartFactor: { kind: 'number', min: 0, max: 1, help: 'warmup starts at lr x factor' },
  minLr: { kind: 'number', min: 0, help: 'cosine floor' },
  tau0: { kind: 'number', min: 0, max: 1, help: 'Table 5(d): initial target momentum' },
  lossNormalization: { kind: ['paper', 'authors'], help: "loss averaging: the paper's Eq. 6 or the authors' code" },
};

export type PresetName = 'paper' | 'official' | 'soco-star' | 'c4';

/** Each preset maps the configuration so far to changes; presets compose in the order given. */
export const PRESETS: Record<PresetName, { help: string; apply: (c: TrainConfig) => Partial<TrainConfig> }> = {
  paper: { help: 'the paper (the defaults)', apply: () => ({}) },
  official: {
    help: "the authors' code: raw-image crops, independent V3 crop, keep-and-clip, their box pipeline and RoIAlign scale, all-level pooling, warmup from lr/100, eta_min 1e-6, their loss averaging",
    apply: (c) => ({
      cropFromRaw: true, viewLayout: 'official', keepClipped: true, boxPipeline: 'official', poolerScale: 'map',
      poolAllLevels: c.arch === 'fpn' && c.fpn && c.scaleAware,
      warmupStartFactor: 0.01, minLr: 1e-6, lossNormalization: 'authors',
      ...(c.arch === 'c4' ? { cropScale: [0.6, 1] as [number, number] } : {}),
    }),
  },
  'soco-star': { help: 'SoCo*: a fourth view, 400 epochs', apply: () => ({ socoStar: true, epochs: 400 }) },
  c4: {
    help: 'R50-C4: RoIAlign on C4, res5 head, views V1 and V2 only, no jitter',
    apply: (c) => ({
      arch: 'c4', multiView: false, jitter: false, socoStar: false, poolAllLevels: false,
      ...(c.viewLayout === 'official' ? { cropScale: [0.6, 1] as [number, number] } : {}),
    }),
  },
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const kebab = (k: string): string => k.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`);
export const flagName = (k: keyof TrainConfig): string => `--${kebab(k)}`;

function describeKind(kind: Kind): string {
  if (Array.isArray(kind)) return `one of ${kind.join(', ')}`;
  return ({ string: 'a string', device: DEVICE_CHOICES, int: 'an integer', number: 'a number', bool: 'true or false', pair: 'two numbers', triple: 'three numbers' } as Record<string, string>)[kind as string];
}

/**
 * Converts one value (from JSON/YAML, or a flag's string) to the key's type and checks its range.
 * `where` names the source in errors: 'flag --batch-size', 'config file x.json'.
 */
export function coerce<K extends keyof TrainConfig>(key: K, value: unknown, where: string): TrainConfig[K] {
  const f = CONFIG_FIELDS[key];
  if (!f) throw new ConfigError(`${where}: unknown config key '${key}'`);
  const bad = (): never => { throw new ConfigError(`${where}: ${key} must be ${describeKind(f.kind)}, got ${JSON.stringify(value)}`); };
  const range = (n: number): void => {
    if ((f.min !== undefined && n < f.min) || (f.max !== undefined && n > f.max))
      throw new ConfigError(`${where}: ${key} must be in [${f.min ?? '-inf'}, ${f.max ?? 'inf'}], got ${n}`);
  };
  const num = (v: unknown): number => {
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    if (!Number.isFinite(n)) bad();
    return n;
  };
  let out: unknown;
  if (Array.isArray(f.kind)) {
    const choices = f.kind as readonly (string | number)[];
    const v = typeof choices[0] === 'number' ? num(value) : value;
    if (!choices.includes(v as string & number)) bad();
    out = v;
  } else if (f.kind === 'string') {
    if (typeof value !== 'string') bad();
    out = value;
  } else if (f.kind === 'device') {
    if (typeof value !== 'string' || !isDeviceChoice(value)) bad();
    out = value;
  } else if (f.kind === 'int' || f.kind === 'number') {
    const n = num(value);
    if (f.kind === 'int' && !Number.isInteger(n)) bad();
    range(n);
    out = n;
  } else if (f.kind === 'bool') {
    if (typeof value === 'boolean') out = value;
    else if (value === 'true' || value === '1' || value === 'yes') out = true;
    else if (value === 'false' || value === '0' || value === 'no') out = false;
    else bad();
  } else {
    const n = f.kind === 'pair' ? 2 : 3;
    const parts = typeof value === 'string' ? value.split(',') : Array.isArray(value) ? value : bad();
    if (parts.length !== n) bad();
    const nums = parts.map(num);
    nums.forEach(range);
    out = nums;
  }
  return out as TrainConfig[K];
}

/** Reads a JSON or YAML config file into a partial config, checking every key. */
export function readConfigFile(file: string): Partial<TrainConfig> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`config file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let raw: unknown;
  const ext = path.extname(file).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') {
    raw = parseYaml(text, file);
  } else {
    try { raw = JSON.parse(text); } catch (e) { throw new ConfigError(`config file ${file}: invalid JSON (${(e as Error).message})`); }
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${file}: expected a mapping of config keys`);
  const out: Partial<TrainConfig> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    // Accept both camelCase and the flags' kebab-case spelling.
    const key = k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof TrainConfig;
    if (!(key in CONFIG_FIELDS)) throw new ConfigError(`config file ${file}: unknown key '${k}' (known: ${Object.keys(CONFIG_FIELDS).join(', ')})`);
    (out as Record<string, unknown>)[key] = coerce(key, v, `config file ${file}`);
  }
  // Relative paths in a config file are relative to the file.
  for (const k of ['images', 'proposals', 'out'] as const)
    if (out[k] && !path.isAbsolute(out[k] as string)) out[k] = path.resolve(path.dirname(file), out[k] as string);
  if (out.resume && !['auto', 'never'].includes(out.resume) && !path.isAbsolute(out.resume))
    out.resume = path.resolve(path.dirname(file), out.resume);
  return out;
}

function parseYaml(text: string, file: string): unknown {
  try {
    return parseYamlText(text);
  } catch (e) {
    throw new ConfigError(`config file ${file}: invalid YAML (${(e as Error).message.split('\n')[0]})`);
  }
}

export interface ConfigSources {
  /** Preset names, applied in order after the defaults (comma-separated string or list). */
  presets?: string | string[];
  /** A JSON or YAML file. */
  file?: string;
  /** Highest precedence: values from flags (strings are coerced) or from code. */
  overrides?: Partial<Record<keyof TrainConfig, unknown>>;
}

export interface ResolvedConfig {
  config: TrainConfig;
  /** Where each key's value came from: 'default', 'preset official', 'file x.yaml', 'flag'. */
  origin: Record<keyof TrainConfig, string>;
  presets: PresetName[];
}

/** defaults < presets < file < overrides, then cross-key checks. */
export function resolveConfig(src: ConfigSources = {}): ResolvedConfig {
  const config: TrainConfig = structuredClone(DEFAULT_CONFIG) as TrainConfig;
  const origin = Object.fromEntries(Object.keys(DEFAULT_CONFIG).map((k) => [k, 'default'])) as Record<keyof TrainConfig, string>;
  const set = (part: Partial<TrainConfig>, from: string): void => {
    for (const [k, v] of Object.entries(part)) {
      (config as unknown as Record<string, unknown>)[k] = v;
      origin[k as keyof TrainConfig] = from;
    }
  };
  const names = (typeof src.presets === 'string' ? src.presets.split(',') : src.presets ?? []).map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!(n in PRESETS)) throw new ConfigError(`--preset: unknown preset '${n}' (known: ${Object.keys(PRESETS).join(', ')})`);
    set(PRESETS[n as PresetName].apply(config), `preset ${n}`);
  }
  if (src.file) set(readConfigFile(src.file), `file ${src.file}`);
  if (src.overrides) {
    const part: Partial<TrainConfig> = {};
    for (const [k, v] of Object.entries(src.overrides)) {
      if (v === undefined) continue;
      if (!(k in CONFIG_FIELDS)) throw new ConfigError(`unknown config key '${k}'`);
      (part as Record<string, unknown>)[k] = coerce(k as keyof TrainConfig, v, `flag ${flagName(k as keyof TrainConfig)}`);
    }
    set(part, 'flag');
  }
  // Choosing arch c4 in a file or a flag brings its view layout, as --preset c4 does, for the keys
  // the user did not set (a c4 run with an explicit --multi-view true is still refused below).
  if (config.arch === 'c4' && !names.includes('c4')) {
    const byUser = (k: string): boolean => /^(flag|file )/.test(origin[k as keyof TrainConfig]);
    set(Object.fromEntries(Object.entries(PRESETS.c4.apply(config)).filter(([k]) => !byUser(k))), 'arch c4');
  }
  checkConfig(config);
  return { config, origin, presets: names as PresetName[] };
}

/** Checks across keys; each message names the keys involved. */
export function checkConfig(c: TrainConfig): void {
  const fail = (m: string): never => { throw new ConfigError(m); };
  if (c.cropScale[0] > c.cropScale[1] || c.cropScale[0] <= 0) fail(`cropScale must be 0 < min <= max <= 1, got ${c.cropScale}`);
  if (c.cropRatio[0] > c.cropRatio[1] || c.cropRatio[0] <= 0) fail(`cropRatio must be 0 < min <= max, got ${c.cropRatio}`);
  const t = c.levelThresholds;
  if (!(t[0] < t[1] && t[1] < t[2])) fail(`levelThresholds must increase, got ${t}`);
  if (c.arch === 'c4' && (c.socoStar || c.multiView)) fail(`arch c4 uses views V1 and V2 only: ${c.multiView ? 'multiView' : 'socoStar'} must be false (leave it unset and arch c4 sets it)`);
  if (c.arch === 'c4' && c.poolAllLevels) fail('poolAllLevels applies to arch fpn only');
  if (c.socoStar && !c.multiView) fail('socoStar adds V4 to V1, V2 and V3: it needs multiView true');
  if (!c.fpn && c.poolAllLevels) fail('poolAllLevels needs fpn');
  if (c.poolAllLevels && !c.scaleAware) fail('poolAllLevels keeps each box on its scale-aware level: it needs scaleAware true');
  if (c.boxPipeline === 'official' && !(c.cropFromRaw && c.keepClipped))
    fail("boxPipeline official is the authors' box path: it crops the raw image and clips the proposals, so it needs cropFromRaw true and keepClipped true (preset official sets all three)");
  if (c.warmupEpochs > c.epochs) fail(`warmupEpochs (${c.warmupEpochs}) exceeds epochs (${c.epochs}): lower it with --warmup-epochs`);
  if (c.minLr > c.baseLr * c.batchSize / 256) fail(`minLr (${c.minLr}) exceeds the peak lr baseLr*batchSize/256 (${c.baseLr * c.batchSize / 256})`);
}

/** The paper ablations of Tables 4 and 5, as config changes (documented in docs/training.md). */
export const ABLATIONS: Record<string, Partial<TrainConfig>> = {
  'table4-whole-image': { proposalSource: 'whole-image', fpn: false, head: false, scaleAware: false, jitter: false, multiView: false, k: 1 },
  'table4-selective-search': { fpn: false, head: false, scaleAware: false, jitter: false, multiView: false },
  'table4-fpn': { head: false, scaleAware: false, jitter: false, multiView: false },
  'table4-fpn-head': { scaleAware: false, jitter: false, multiView: false },
  'table4-scale-aware': { jitter: false, multiView: false },
  'table4-jitter': { multiView: false },
  'table4-full': {},
  'table5c-random-k1': { proposalSource: 'random', k: 1 },
};

/** Flag help lines: `--batch-size <int>  Table 5(b): global batch size (default 2048)`. */
export function flagHelp(): { flag: string; arg: string; help: string }[] {
  return (Object.keys(CONFIG_FIELDS) as (keyof TrainConfig)[]).map((k) => {
    const f = CONFIG_FIELDS[k];
    const d = DEFAULT_CONFIG[k];
    const arg = f.kind === 'bool' ? '[bool]' : f.kind === 'device' ? '<auto|cpu|cuda|cuda:N>' : Array.isArray(f.kind) ? `<${f.kind.join('|')}>` : `<${f.kind}>`;
    return { flag: flagName(k), arg, help: `${f.help} (default ${Array.isArray(d) ? d.map((x) => +x.toFixed(4)).join(',') : JSON.stringify(d)})` };
  });
}
