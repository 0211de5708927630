// Worker processes of the distributed tests (test/dist-*.test.ts), started by launch() with
// torchrun's variables. The SoCo scenario runs lib/train's trainStep; without the launcher's
// variables it is the single-process reference. Usage: node dist-worker.js <scenario> <outDir> [--steps N] [--batch B] [--ckpt FILE]
// [--resume] [--sleep MS] [--timeout MS] [--overlap-every K]
// [--save FILE] [--compare FILE] [--progress]
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../lib/torch';
import { Tensor, tidy } from '../lib/torch';
import { SoCoModel, SoCoModelOptions, SoCoView } from '../lib/model';
import { anchorPairs, trainStep } from '../lib/train/step';
import { LARS } from '../lib/train/lars';
import * as dist from '../lib/dist';

// ---- the SoCo step used by the equivalence and resume tests ----

/** ResNet-18 R-FPN without the 4conv1fc head, small MLPs: the real model, sized for a CPU test. */
export const SOCO_OPTIONS: Partial<SoCoModelOptions> = { depth: 18, head: false, projectorHidden: 64, predictorHidden: 64, embedDim: 32 };
export const VIEW_SIZES = [64, 64, 32];
export const K = 2;
export const LR = 0.2;
export const TAU = 0.99;
export const SEED = 7;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The views of `step` for this rank: the global batch is generated in full on every rank (same
 * seed) and each rank keeps images [rank*b, (rank+1)*b), b = globalBatch / worldSize.
 */
export function makeViews(step: number, globalBatch: number, rank: number, worldSize: number): SoCoView[] {
  const b = globalBatch / worldSize;
  const gen = new torch.Generator(SEED * 1000 + step);
  const rnd = mulberry32(SEED * 7919 + step);
  return VIEW_SIZES.map((s) => tidy(() => {
    const image = torch.randn([globalBatch, 3, s, s], { generator: gen }).narrow(0, rank * b, b).contiguous();
    const rows: number[][] = [];
    for (let n = 0; n < globalBatch; n++) {
      for (let k = 0; k < K; k++) {
        // Box 0 on P2 (sqrt(wh) <= 48), box 1 on P3 in the 64-px views: every rank pools on the
        // same levels (see the FPN note in test/dist-ddp.test.ts); P4/P5 get no gradient anywhere.
        const lo = k === 1 && s >= 64 ? 50 : 8, hi = k === 1 && s >= 64 ? 60 : Math.min(40, s - 4);
        const bw = lo + rnd() * (hi - lo), bh = lo + rnd() * (hi - lo);
        const x1 = rnd() * (s - bw), y1 = rnd() * (s - bh);
        if (n >= rank * b && n < (rank + 1) * b) rows.push([n - rank * b, x1, y1, x1 + bw, y1 + bh]);
      }
    }
    return { image, boxes: torch.tensor(rows) };
  }));
}

export interface Trainer {
  model: SoCoModel;
  opt: LARS;
  params: [string, Tensor][];
}

/** Weights from manualSeed(seed): each rank may start different; broadcast makes them rank 0's. */
export function makeTrainer(seed: number): Trainer {
  torch.manualSeed(seed);
  const model = new SoCoModel(SOCO_OPTIONS);
  const params: [string, Tensor][] = [...model.online.namedParameters('online'), ...model.predictor.namedParameters('predictor')];
  return { model, opt: new LARS(params), params };
}

/**
 * One iteration of lib/train's trainStep (forward both networks, symmetric loss, backward, LARS,
 * EMA); with a reducer attached to t.opt (reduceGradientsInStep) the gradients are averaged over
 * the ranks between backward and the update. Returns this rank's loss.
 */
export function socoStep(t: Trainer, step: number, globalBatch: number, rank: number, worldSize: number,
  reducer: dist.GradientReducer | null, overlap: boolean): number {
  return tidy(() => {
    const views = makeViews(step, globalBatch, rank, worldSize);
    if (reducer) reducer.overlap = overlap;
    const r = trainStep(t.model, t.opt, views, anchorPairs(views.length),
      { lr: LR, tau: TAU, normalization: 'paper', measureStd: false, step, lastCheckpoint: null });
    if (reducer) {
      const stats = reducer.lastStats!;
      if (overlap && stats.overlapped === 0) throw new Error('no bucket started during backward');
      if (!overlap && stats.overlapped !== 0) throw new Error('a bucket started during backward without prepare()');
    }
    return r.loss;
  });
}

/** Every tensor of the trainer: model state (both networks, predictor, BN buffers) and LARS momentum. */
export function trainerState(t: Trainer): [string, Tensor][] {
  const sd = t.model.stateDict();
  const mom = t.opt.stateDict().momentum;
  return [...Object.entries(sd), ...Object.entries(mom).map(([k, v]) => [`lars.${k}`, v] as [string, Tensor])];
}

// ---- a plain binary state file: JSON index line + raw little-endian data ----

interface Entry { name: string; dtype: torch.DType; shape: number[]; offset: number; bytes: number }

export function saveState(file: string, entries: [string, Tensor][], meta: Record<string, unknown>): void {
  const index: Entry[] = [];
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    const a = t.toTypedArray();
    const buf = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    index.push({ name, dtype: t.dtype, shape: t.shape, offset, bytes: buf.length });
    chunks.push(buf);
    offset += buf.length;
  }
  const head = Buffer.from(JSON.stringify({ meta, index }) + '\n');
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat([head, ...chunks]));
  fs.renameSync(tmp, file);
}

export function loadState(file: string): { meta: Record<string, any>; tensors: Map<string, Tensor> } {
  const all = fs.readFileSync(file);
  const nl = all.indexOf(10);
  const { meta, index } = JSON.parse(all.subarray(0, nl).toString()) as { meta: Record<string, any>; index: Entry[] };
  const data = all.subarray(nl + 1);
  const tensors = new Map<string, Tensor>();
  for (const e of index) {
    const raw = data.subarray(e.offset, e.offset + e.bytes);
    const copy = new Uint8Array(raw.length);
    copy.set(raw);
    const arr = torch.arrayFor(e.dtype, e.bytes / (e.dtype === 'int64' || e.dtype === 'float64' ? 8 : e.dtype === 'float32' || e.dtype === 'int32' ? 4 : 1));
    new Uint8Array(arr.buffer).set(copy);
    tensors.set(e.name, torch.tensor(arr, { dtype: e.dtype, shape: e.shape }));
  }
  return { meta, tensors };
}

// ---- scenarios ----

interface Args {
  /** Print a line per step (the interrupt test waits for one). */
  progress: boolean;
  steps: number; batch: number; ckpt?: string; resume: boolean; sleep: number; timeout: number; overlapEvery: number;
  /** Write the final state here (the single-process reference). */
  save?: string;
  /** Compare the final state with this reference file; writes compare-<rank>.json. */
  compare?: string;
}

function parseArgs(rest: string[]): Args {
  const a: Args = { progress: false, steps: 3, batch: 8, resume: false, sleep: 0, timeout: 30000, overlapEvery: 1 };
  for (let i = 0; i < rest.length; i++) {
    const v = rest[i + 1];
    switch (rest[i]) {
      case '--steps': a.steps = Number(v); i++; break;
      case '--batch': a.batch = Number(v); i++; break;
      case '--ckpt': a.ckpt = v; i++; break;
      case '--resume': a.resume = true; break;
      case '--progress': a.progress = true; break;
      case '--sleep': a.sleep = Number(v); i++; break;
      case '--timeout': a.timeout = Number(v); i++; break;
      case '--overlap-every': a.overlapEvery = Number(v); i++; break;
      case '--save': a.save = v; i++; break;
      case '--compare': a.compare = v; i++; break;
      default: throw new Error(`dist-worker: unknown argument ${rest[i]}`);
    }
  }
  return a;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function writeJson(outDir: string, name: string, value: unknown): void {
  fs.writeFileSync(path.join(outDir, name), JSON.stringify(value));
}

async function collectives(ctx: dist.DistContext, outDir: string): Promise<void> {
  const g = ctx.group;
  const r = ctx.rank;
  const res: Record<string, unknown> = {};
  const x = torch.tensor([r + 1, 10 * (r + 1), -r]);
  await g.allReduce(x, 'sum');
  res.sum = x.toArray();
  const y = torch.tensor([r + 1, 10 * (r + 1), -r]);
  await g.allReduce(y, 'avg');
  res.avg = y.toArray();
  const z = torch.tensor([r, 5 - r]);
  await g.allReduce(z, 'max');
  res.max = z.toArray();
  const i64 = torch.tensor([r + 1], { dtype: 'int64' });
  await g.allReduce(i64, 'sum');
  res.int64 = i64.toArray();
  const b = torch.tensor([r * 100 + 1, r * 100 + 2]);
  await g.broadcast(b, 1);
  res.broadcast = b.toArray();
  const parts = await g.allGather(torch.tensor([[r, r * r], [7, -r]]));
  res.allGather = parts.map((p) => ({ shape: p.shape, values: p.toArray() }));
  await g.barrier();
  await ctx.store.set(`hello/${r}`, `from ${r}`);
  res.store = (await ctx.store.get(`hello/${1 - r}`, 10000)).toString();
  try {
    await g.allReduce(torch.tensor([1], { dtype: 'int64' }), 'avg');
    res.avgIntError = null;
  } catch (err) {
    res.avgIntError = (err as Error).message;
  }
  // Several collectives in flight at once complete in issue order on every rank.
  const many = Array.from({ length: 5 }, (_, k) => torch.full([1000], r + k));
  await Promise.all(many.map((t) => g.allReduce(t, 'sum')));
  res.inFlight = many.map((t) => t.max().item());
  writeJson(outDir, `collectives-${r}.json`, res);
  await g.barrier();
}

async function timeout(ctx: dist.DistContext, outDir: string): Promise<void> {
  if (ctx.rank === 0) {
    const t0 = Date.now();
    let message = '';
    try {
      await ctx.group.allReduce(torch.tensor([1]), 'sum', { timeoutMs: 1500 });
    } catch (err) {
      message = (err as Error).message;
    }
    let afterwards = '';
    try {
      await ctx.group.barrier({ timeoutMs: 1000 });
    } catch (err) {
      afterwards = (err as Error).message;
    }
    writeJson(outDir, 'timeout.json', { message, elapsedMs: Date.now() - t0, failed: ctx.group.failed, afterwards });
    await ctx.store.set('rank0-done', '1');
    await ctx.store.get('rank1-ack', 20000);
  } else {
    // Never joins the all-reduce: rank 0 must give up on its own, naming itself.
    await ctx.store.get('rank0-done', 20000);
    await ctx.store.set('rank1-ack', '1');
  }
}

async function die(ctx: dist.DistContext, outDir: string): Promise<void> {
  await ctx.group.barrier();
  if (ctx.rank === 1) {
    fs.writeFileSync(path.join(outDir, 'victim.pid'), String(process.pid));
    process.kill(process.pid, 'SIGKILL');
  }
  // Rank 0 keeps communicating; its peer vanishes mid-job.
  const t = torch.ones([1000]);
  for (let i = 0; i < 1e6; i++) {
    try {
      await ctx.group.allReduce(t, 'avg');
    } catch (err) {
      console.error(`rank 0 saw: ${(err as Error).message}`);
      throw err;
    }
  }
}

async function fail(ctx: dist.DistContext): Promise<void> {
  if (ctx.rank === 1) throw new Error('boom from rank 1');
  await ctx.group.barrier();
}

async function soco(ctx: dist.DistContext | null, outDir: string, a: Args): Promise<number> {
  const rank = ctx?.rank ?? 0;
  const world = ctx?.worldSize ?? 1;
  const group = ctx?.group ?? null;
  const t = makeTrainer(SEED + 1000 * rank); // different on every rank until the broadcast
  let start = 0;
  if (group) {
    dist.convertSyncBatchNorm(t.model, group);
    await dist.broadcastModule(group, t.model, 0);
  }
  if (a.resume && a.ckpt && fs.existsSync(a.ckpt)) {
    const { meta, tensors } = loadState(a.ckpt);
    const sd: Record<string, Tensor> = {};
    const mom: Record<string, Tensor> = {};
    for (const [k, v] of tensors) { if (k.startsWith('lars.')) mom[k.slice(5)] = v; else sd[k] = v; }
    t.model.loadStateDict(sd);
    t.opt.loadStateDict({ steps: meta.step, momentum: mom });
    start = meta.step;
    if (a.progress) console.log(`rank ${rank} resumed at step ${start}`);
  }
  const reducer = group ? new dist.GradientReducer(group, t.params.map(([, p]) => p), { bucketCapMb: 2 }) : null;
  if (reducer) dist.reduceGradientsInStep(t.opt, reducer);
  const losses: number[] = [];
  let live = -1;
  for (let step = start; step < a.steps; step++) {
    // A step (SyncBN, bucketed all-reduce, loss average, stop vote) leaves no tensor behind; the
    // first one creates the LARS momentum buffers.
    if (live >= 0 && torch.liveTensors() !== live) throw new Error(`step ${step} began with ${torch.liveTensors()} live tensors, step ${step - 1} with ${live}`);
    if (step > start) live = torch.liveTensors();
    const local = socoStep(t, step, a.batch, rank, world, reducer, step % a.overlapEvery === 0);
    let global = local;
    if (group) {
      const l = torch.tensor([local], { dtype: 'float64' });
      await group.allReduce(l, 'avg');
      global = l.item();
      l.dispose();
    }
    losses.push(global);
    if (rank === 0 && a.progress) console.log(`step ${step + 1} loss ${global}`);
    if (a.sleep) await sleep(a.sleep);
    if (ctx && step + 1 < a.steps && await ctx.stop.agreed(group)) {
      if (ctx.isMain && a.ckpt) saveState(a.ckpt, trainerState(t), { step: step + 1 });
      await group!.barrier();
      console.log(`rank ${rank} stopped after step ${step + 1} (${ctx.stop.reason ?? 'another rank was interrupted'})`);
      return dist.INTERRUPTED_EXIT_CODE;
    }
  }
  if (a.save) saveState(a.save, trainerState(t), { losses });
  // Every rank compares: they must all end with the reference's state.
  if (a.compare) writeJson(outDir, `compare-${rank}.json`, { ...compareState(t, a.compare), losses, start, buckets: reducer?.buckets.length ?? 0 });
  if (group) await group.barrier();
  reducer?.dispose();
  return 0;
}

/** Largest absolute difference per kind of state against a saved reference. */
function compareState(t: Trainer, refFile: string): Record<string, unknown> {
  const { meta, tensors } = loadState(refFile);
  const mine = new Map(trainerState(t));
  const kinds: Record<string, { count: number; maxDiff: number; worst: string; maxAbs: number }> = {};
  const missing = [...tensors.keys()].filter((k) => !mine.has(k));
  const extra = [...mine.keys()].filter((k) => !tensors.has(k));
  for (const [name, ref] of tensors) {
    const m = mine.get(name);
    if (!m) continue;
    const kind = name.startsWith('lars.') ? 'momentum' : /running_|num_batches/.test(name) ? 'buffers'
      : name.startsWith('target.') ? 'targetParams' : 'params';
    const [diff, abs] = tidy(() => {
      const a = m.to(null, 'float64');
      const b = ref.to(null, 'float64');
      return [a.sub(b).abs().max().item(), b.abs().max().item()];
    });
    const k = (kinds[kind] ??= { count: 0, maxDiff: 0, worst: '', maxAbs: 0 });
    k.count++;
    k.maxAbs = Math.max(k.maxAbs, abs);
    if (!(diff <= k.maxDiff)) { k.maxDiff = diff; k.worst = name; }
  }
  for (const v of tensors.values()) v.dispose();
  return { kinds, missing, extra, refLosses: meta.losses };
}

export async function main(argv: string[]): Promise<number> {
  const [scenario, outDir, ...rest] = argv;
  const a = parseArgs(rest);
  torch.setNumThreads(1);
  const ctx = await dist.initFromEnv({ timeoutMs: a.timeout });
  if (!ctx && scenario !== 'soco') throw new Error(`scenario ${scenario} needs the launcher's environment`);
  try {
    switch (scenario) {
      case 'collectives': await collectives(ctx!, outDir); return 0;
      case 'timeout': await timeout(ctx!, outDir); return 0;
      case 'die': await die(ctx!, outDir); return 0;
      case 'fail': await fail(ctx!); return 0;
      case 'soco': return await soco(ctx, outDir, a);
      default: throw new Error(`dist-worker: unknown scenario '${scenario}'`);
    }
  } finally {
    ctx?.destroy();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => { console.error(err.stack ?? String(err)); process.exit(1); },
  );
}
