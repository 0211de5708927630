// SoCoTrainer: owns time. It checks everything it can before any work, builds the model, LARS and
// the loader, resumes exactly from a checkpoint, then runs iterations with the lr and tau of each
// step, logs, checkpoints, and stops cleanly on request (Ctrl-C / SIGTERM in the CLI).
//
// Exact resume: the schedules are pure functions of the step; the loader's randomness is a
// function of (seed, epoch, image index); the checkpoint holds the online and target weights
// (BN statistics included), the LARS momentum buffers, the step, the tau step and LibTorch's RNG
// states. So iterations k+1.. after a resume from step k repeat those of an uninterrupted run.
//
// Several processes (launched by `soco-train train --nproc-per-node N`, torchrun or Slurm): each
// joins the job in prepare() (lib/distributed's initFromEnv), every BatchNorm becomes a SyncBatchNorm,
// rank 0's state is broadcast, each rank reads its shard of the global batch and gradients are
// averaged over the ranks before the LARS update, so N ranks train as one process with the whole
// batch. The ranks agree on a stop before each iteration; rank 0 alone writes files and logs
// (metrics.jsonl and the same records as TensorBoard events in tb/).
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../torch';
import type { Saveable } from '../torch/serialize';
import { SoCoModel, SoCoView, exportDetectron2, detectron2Yaml } from '../model';
import { LARS } from './lars';
import { TrainConfig, ResolvedConfig, resolveConfig, ConfigSources, networkOptions } from './config';
import { lrAt, tauAt, scaledLr, LrSchedule, checkLrSchedule } from './schedules';
import { MetricRecord, MetricsWriter, Throughput, progressLine, isCollapsed, peakResidentMiB, residentMiB, deviceMemoryMiB } from './metrics';
import { TensorBoardWriter } from './tensorboard';
import { CheckpointSaver, checkFreeSpace, LAST } from './checkpoint';
import { checkOutputPath } from '../io/output_path';
import { describeRemoved, removeStaleTemps } from '../io/temp_files';
import { GradientSync, NonFiniteLossError, StepPrecision, trainStep } from './step';
import { LossScaleState, autocastDtype, initialLossScale, updateLossScale } from './amp';
import { BatchSource, createBatchSource, Shard } from './data_source';
import { DistContext, GradientReducer, InitOptions, broadcastModule, broadcastTensors, convertSyncBatchNorm, initFromEnv, readDistEnv } from '../distributed';
import { OutputLock, acquireLock } from '../io/lock';

/** Writes and reads checkpoint state (lib/torch's PyTorch-format save/load). */
export interface CheckpointIO {
  save(file: string, state: Record<string, unknown>): void;
  load(file: string): Record<string, unknown>;
}

export interface TrainerHooks {
  /**
   * Builds the loader for the resolved config (default: lib/data's SoCoLoader). config.batchSize
   * is the global batch; `shard` says which part of it this process draws.
   */
  createBatchSource(config: TrainConfig, device: string, log: (m: string) => void, shard: Shard): Promise<BatchSource>;
  /** Default: lib/torch's save/load (PyTorch zip format, atomic writes). */
  io: CheckpointIO;
  /** Joins the multi-process job this process belongs to; null: train alone (default: lib/distributed's initFromEnv). */
  initDist(o: InitOptions): Promise<DistContext | null>;
}

const DEFAULT_HOOKS: TrainerHooks = {
  createBatchSource,
  initDist: initFromEnv,
  io: { save: (file, state) => torch.save(file, state as Saveable), load: (file) => torch.load(file) as Record<string, unknown> },
};

export interface CheckpointEvent { path: string; step: number; reason: 'interval' | 'epoch' | 'end' | 'stop' }
export interface TrainResult {
  steps: number;
  stoppedEarly: boolean;
  lastCheckpoint: string | null;
  finalLoss: number;
}

/** The lock file in --out: one run writes a folder at a time (lib/io/lock.ts). */
export const OUT_LOCK = '.soco-train.lock';

/** Keys that must match between a checkpoint and the resuming config (they change the model or the step sequence). */
const RESUME_KEYS: (keyof TrainConfig)[] = [
  'arch', 'depth', 'fpn', 'head', 'scaleAware', 'singleLevel', 'poolAllLevels', 'levelThresholds', 'projectorHidden', 'predictorHidden',
  'embedDim', 'batchSize', 'epochs', 'maxIters', 'baseLr', 'warmupEpochs', 'warmupStartFactor', 'minLr', 'tau0', 'seed', 'k',
];

export class SoCoTrainer extends EventEmitter {
  readonly config: TrainConfig;
  readonly resolved: ResolvedConfig;
  model: SoCoModel | null = null;
  optimizer: LARS | null = null;
  /** Completed iterations. */
  step = 0;
  private data: BatchSource | null = null;
  private stopReason: string | null = null;
  private saver: CheckpointSaver;
  private lastCheckpoint: string | null = null;
  private device = 'cpu';
  private schedule: LrSchedule | null = null;
  private totalIters = 0;
  private readonly hooks: TrainerHooks;
  /** The job this process is part of (null: one process). */
  private ctx: DistContext | null = null;
  private reducer: GradientReducer | null = null;
  /** Set while joining the job: aborting it ends the rendezvous. */
  private joining: AbortController | null = null;
  /** Mixed precision of every step (undefined: float32), and fp16's loss scale. */
  private precision: StepPrecision | undefined;
  private lossScale: LossScaleState | null = null;
  /** Place in the job, kept after leaving it (exports and messages after train() are rank 0's). */
  private place = { rank: 0, worldSize: 1 };
  /** --out's writer lock, held by rank 0 from preflight() to close(). */
  private outLock: OutputLock | null = null;

  constructor(config: Partial<TrainConfig> | ResolvedConfig | ConfigSources = {}, hooks: Partial<TrainerHooks> = {}) {
    super();
    this.resolved = isResolved(config) ? config
      : isSources(config) ? resolveConfig(config)
        : resolveConfig({ overrides: config as Partial<TrainConfig> });
    this.config = this.resolved.config;
    this.saver = new CheckpointSaver(path.resolve(this.config.out), this.config.keepCheckpoints);
    this.hooks = { ...DEFAULT_HOOKS, ...hooks };
  }

  /** Asks the run to stop after the current iteration, writing a checkpoint; at the rendezvous, to leave it at once. */
  stop(reason = 'stop requested'): void {
    this.stopReason ??= reason;
    this.joining?.abort(reason);
  }

  /** True while this process waits for the other processes of its job (nothing to checkpoint yet). */
  get atRendezvous(): boolean { return this.joining !== null; }

  get outDir(): string { return path.resolve(this.config.out); }

  /** This process's rank (0 alone), the number of processes, and whether it writes and logs (rank 0). */
  get rank(): number { return this.place.rank; }
  get worldSize(): number { return this.place.worldSize; }
  get isMain(): boolean { return this.rank === 0; }

  /** Checks that need no model: folders, proposal store, device, resume target. Throws naming the problem. */
  preflight(): { resumeFrom: string | null } {
    const c = this.config;
    checkOutputPath(c.out, { flag: '--out', kind: 'dir' });
    if (!c.images) throw new Error('--images is required: the folder of training images');
    const images = path.resolve(c.images);
    if (!fs.existsSync(images)) throw new Error(`--images ${c.images}: no such folder`);
    if (!fs.statSync(images).isDirectory()) throw new Error(`--images ${c.images}: not a folder`);
    if (c.proposalSource === 'selective-search') {
      if (!c.proposals) throw new Error('--proposals is required with proposalSource selective-search (make one with `soco-train proposals generate`)');
      if (!fs.existsSync(c.proposals)) throw new Error(`--proposals ${c.proposals}: no such file (make it with \`soco-train proposals generate --images ${c.images} --out ${c.proposals}\`)`);
    }
    this.device = torch.pickDevice(c.device);
    const dtype = autocastDtype(c.precision, this.device);
    this.precision = dtype ? { deviceType: this.device.startsWith('cuda') ? 'cuda' : 'cpu', dtype } : undefined;
    this.lossScale = dtype === 'float16' ? initialLossScale() : null;
    let resumeFrom: string | null = null;
    const last = path.join(this.outDir, LAST);
    if (c.resume === 'auto') resumeFrom = fs.existsSync(last) ? last : null;
    else if (c.resume === 'must') {
      if (!fs.existsSync(last)) throw new Error(`--resume: ${this.outDir} has no ${LAST} to continue from`);
      resumeFrom = last;
    } else if (c.resume === 'never') {
      if (fs.existsSync(last)) throw new Error(`--out ${c.out} already holds a run (${LAST}); resume it (--resume) or choose another --out`);
    } else {
      if (!fs.existsSync(c.resume)) throw new Error(`--resume ${c.resume}: no such checkpoint`);
      resumeFrom = path.resolve(c.resume);
    }
    fs.mkdirSync(this.outDir, { recursive: true });  // once every check passed: a refused run leaves nothing behind
    // The last check: rank 0 by the launcher's environment, so a second run is refused before it joins a job.
    if (!this.outLock && (readDistEnv()?.rank ?? 0) === 0)
      this.outLock = acquireLock(path.join(this.outDir, OUT_LOCK), { what: `--out ${c.out}`, command: 'train', log: (m) => this.emit('warning', m) });
    return { resumeFrom };
  }

  /** Builds model, optimizer and loader; resumes when asked. Idempotent. */
  async prepare(): Promise<void> {
    if (this.model) return;
    const { resumeFrom } = this.preflight();
    try {
      await this.joinJob();
      await this.build(resumeFrom);
    } catch (e) {
      this.leaveJob();
      this.releaseOut();
      throw e;
    }
  }

  /** Lets the next run write --out. */
  private releaseOut(): void {
    this.outLock?.release();
    this.outLock = null;
  }

  /** Joins the job described by the environment, if any; with NCCL, this rank's GPU becomes the device. */
  private async joinJob(): Promise<void> {
    if (this.ctx) return;
    // CPU training reduces CPU tensors: Gloo, whatever the machine has (unless SOCO_DIST_BACKEND says).
    const backend = process.env.SOCO_DIST_BACKEND ? undefined : this.device === 'cpu' ? 'gloo' : 'nccl';
    this.joining = new AbortController();
    if (this.stopReason) this.joining.abort(this.stopReason);
    let ctx: DistContext | null;
    try {
      ctx = await this.hooks.initDist({ backend, rendezvousTimeoutMs: this.config.rendezvousTimeout * 1000, signal: this.joining.signal });
    } finally {
      this.joining = null;
    }
    if (!ctx) return;
    this.ctx = ctx;
    this.place = { rank: ctx.rank, worldSize: ctx.worldSize };
    if (/^cuda:\d+$/.test(this.config.device) && ctx.worldSize > 1) {
      this.leaveJob();
      throw new Error(`--device ${this.config.device} names one GPU, but each of the job's ${ctx.worldSize} processes trains on the GPU of its local rank: use --device cuda`);
    }
    if (ctx.backend === 'nccl') this.device = ctx.device;
    else if (this.device !== 'cpu') {
      this.leaveJob();
      throw new Error(`rank ${ctx.rank}: --device ${this.config.device} with the gloo backend, which reduces CPU tensors: use --device cpu, or SOCO_DIST_BACKEND=nccl`);
    }
  }

  /** Ends this process's part in the job (signal handlers, process group). */
  private leaveJob(): void {
    this.reducer?.dispose();
    this.reducer = null;
    this.ctx?.destroy();
    this.ctx = null;
  }

  private async build(resumeFrom: string | null): Promise<void> {
    const c = this.config;
    const ctx = this.ctx;
    torch.manualSeed(c.seed);
    this.data = await this.hooks.createBatchSource(c, this.device, (m) => this.emit('warning', m), { rank: this.rank, worldSize: this.worldSize });
    const ipe = this.data.itersPerEpoch;
    this.emit('data', { images: this.data.numImages, itersPerEpoch: ipe, workers: c.workers, prefetch: c.prefetch });
    if (ipe < 1) throw new Error(`--batch-size ${c.batchSize} is larger than the data set (${this.data.numImages} images${this.worldSize > 1 ? `, ${Math.floor(this.data.numImages / this.worldSize)} per process` : ''}): lower it`);
    this.totalIters = c.maxIters > 0 ? c.maxIters : c.epochs * ipe;
    this.schedule = {
      peakLr: scaledLr(c.baseLr, c.batchSize),
      warmupIters: Math.min(this.totalIters, Math.round(c.warmupEpochs * ipe)),
      totalIters: this.totalIters,
      warmupStartFactor: c.warmupStartFactor,
      minLr: c.minLr,
    };
    checkLrSchedule(this.schedule);
    const model = new SoCoModel(networkOptions(c));
    if (this.device !== 'cpu') model.to(this.device);
    model.train();
    this.model = model;
    // Every BatchNorm of the online network, predictor and target: statistics over the global
    // batch (--sync-bn, the paper's setting; SyncBN shares the BatchNorm's tensors, so names and checkpoints do not change).
    if (ctx && c.syncBN) convertSyncBatchNorm(model, ctx.group);
    this.optimizer = new LARS(this.trainedParameters(), { momentum: c.momentum, weightDecay: c.weightDecay, trustCoefficient: c.trustCoefficient });
    // A checkpoint holds online + target + momentum: about 3x the online weights, plus a second
    // copy while last.pth switches.
    const bytes = model.parameters().reduce((s, p) => s + p.numel * 4, 0) * 2.2;
    if (this.isMain) {
      // Left by a writer killed mid-write (kill -9, power loss): tens of MB each, never read.
      const note = describeRemoved(removeStaleTemps(this.outDir));
      if (note) this.emit('warning', `${this.outDir}: ${note}`);
      checkFreeSpace(this.outDir, bytes);
    }
    if (resumeFrom) this.restore(resumeFrom);
    if (ctx) {
      await this.agreeOnStart(ctx, resumeFrom);
      this.reducer = new GradientReducer(ctx.group, this.trainedParameters().map(([, p]) => p));
    }
    if (this.isMain) fs.writeFileSync(path.join(this.outDir, 'config.json'), JSON.stringify({ ...c, presets: this.resolved.presets }, null, 2) + '\n');
  }

  /**
   * Every rank must start from the same step with rank 0's state. Each rank resumed from what it
   * found in --out; a rank that found another step (--out not shared by every machine) stops the
   * job here. Then rank 0's weights, BN statistics and LARS momentum are copied to all ranks.
   */
  private async agreeOnStart(ctx: DistContext, resumeFrom: string | null): Promise<void> {
    const opt = this.optimizer!;
    const momentum = Object.entries(opt.stateDict().momentum).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const mine = torch.tensor([this.step, momentum.length], { dtype: 'int64' });
    const all = await ctx.group.allGather(mine.to(ctx.group.device));
    const seen = all.map((t) => t.toArray());
    for (const t of [mine, ...all]) t.dispose();
    const odd = seen.findIndex((v) => v[0] !== seen[0][0] || v[1] !== seen[0][1]);
    if (odd > 0)
      throw new Error(`rank ${odd} would start at iteration ${seen[odd][0]} but rank 0 at ${seen[0][0]}` +
        ` (rank ${ctx.rank} resumed from ${resumeFrom ?? 'nothing'}): --out ${this.outDir} must be one folder shared by every machine of the job`);
    await broadcastModule(ctx.group, this.model!, 0);
    await broadcastTensors(ctx.group, momentum.map(([, t]) => t), 0);
  }

  private trainedParameters(): [string, torch.Tensor][] {
    const m = this.model!;
    return [...m.online.namedParameters('online'), ...m.predictor.namedParameters('predictor')];
  }

  /** The checkpoint state: a nested record of tensors, numbers and strings. */
  checkpointState(): Record<string, unknown> {
    const m = this.model!;
    const online: Record<string, torch.Tensor> = { ...m.online.stateDict('online.'), ...m.predictor.stateDict('predictor.') };
    const rng: Record<string, torch.Tensor> = { cpu: torch.getRngState('cpu') };
    if (this.device.startsWith('cuda')) rng.cuda = torch.getRngState(this.device);
    return {
      format: 'soco-train checkpoint 1',
      step: this.step,
      tauStep: this.step,
      epoch: this.data ? Math.floor(this.step / this.data.itersPerEpoch) : 0,
      online,
      target: m.target.stateDict('target.'),
      optimizer: this.optimizer!.stateDict(),
      ...(this.lossScale ? { lossScale: { ...this.lossScale } } : {}),
      rng,
      config: JSON.stringify(this.config),
    };
  }

  /** Writes a checkpoint of the current step (rank 0 of a job; the others only note its path); returns its path. */
  saveCheckpoint(reason: CheckpointEvent['reason']): CheckpointEvent {
    if (!this.isMain) {
      this.lastCheckpoint = this.saver.lastPath;
      return { path: this.saver.pathFor(this.step), step: this.step, reason };
    }
    const state = this.checkpointState();
    try {
      const saved = this.saver.save(this.step, (file) => this.hooks.io.save(file, state));
      this.lastCheckpoint = this.saver.lastPath;
      const ev: CheckpointEvent = { path: saved.path, step: this.step, reason };
      this.emit('checkpoint', ev);
      return ev;
    } finally {
      for (const t of Object.values(state.rng as Record<string, torch.Tensor>)) t.dispose();
    }
  }

  private restore(file: string): void {
    let st: Record<string, unknown>;
    try {
      st = this.hooks.io.load(file);
    } catch (e) {
      throw new Error(`cannot read checkpoint ${file}: ${(e as Error).message}. ${this.intactFallback(file)}`);
    }
    if (st.format !== 'soco-train checkpoint 1') throw new Error(`${file} is not a soco-train training checkpoint (format ${JSON.stringify(st.format)})`);
    const saved = JSON.parse(String(st.config)) as TrainConfig;
    const diff = RESUME_KEYS.filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(this.config[k]));
    if (diff.length)
      throw new Error(`cannot resume from ${file}: ${diff.map((k) => `${k} was ${JSON.stringify(saved[k])}, now ${JSON.stringify(this.config[k])}`).join('; ')}. Use the run's settings or start a new --out`);
    const m = this.model!;
    const online = st.online as Record<string, torch.Tensor>;
    const strip = (rec: Record<string, torch.Tensor>, prefix: string): Record<string, torch.Tensor> =>
      Object.fromEntries(Object.entries(rec).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
    m.online.loadStateDict(strip(online, 'online.'));
    m.predictor.loadStateDict(strip(online, 'predictor.'));
    m.target.loadStateDict(strip(st.target as Record<string, torch.Tensor>, 'target.'));
    this.optimizer!.loadStateDict(st.optimizer as { steps: number; momentum: Record<string, torch.Tensor> });
    const ls = st.lossScale as LossScaleState | undefined;
    if (this.lossScale && ls) this.lossScale = { scale: Number(ls.scale), goodSteps: Number(ls.goodSteps) };
    const rng = st.rng as Record<string, torch.Tensor>;
    torch.setRngState(rng.cpu, 'cpu');
    if (rng.cuda && this.device.startsWith('cuda')) torch.setRngState(rng.cuda, this.device);
    this.step = Number(st.step);
    if (Number(st.tauStep) !== this.step) throw new Error(`${file}: tau step ${String(st.tauStep)} differs from step ${this.step}`);
    this.lastCheckpoint = file;
    disposeDeep(st);
    this.emit('resume', { path: file, step: this.step });
  }

  /** Where to resume from when `bad` cannot be read: the newest numbered checkpoint that loads. */
  private intactFallback(bad: string): string {
    const same = (a: string, b: string): boolean => {
      try {
        const x = fs.statSync(a), y = fs.statSync(b);
        return x.ino === y.ino && x.dev === y.dev;
      } catch {
        return false;
      }
    };
    for (const c of this.saver.list().reverse()) {
      if (same(c.path, bad)) continue;  // last.pth is a hard link to the newest numbered file
      try {
        disposeDeep(this.hooks.io.load(c.path));
        return `The newest intact checkpoint is ${c.path} (iteration ${c.step}): continue from it with --resume ${c.path}`;
      } catch {
        /* damaged too: try an older one */
      }
    }
    return `${this.outDir} holds no other intact checkpoint: remove ${bad} to start over, or choose another --out`;
  }

  /** lr and tau used by iteration `it` (0-based). tau is applied after that iteration's update. */
  scheduleAt(it: number): { lr: number; tau: number } {
    if (!this.schedule) throw new Error('SoCoTrainer: call prepare() or train() first');
    // EMA after update `it` with tau(it + 1): the same target weights as the authors' EMA
    // before the target forward of the next iteration.
    return { lr: lrAt(it, this.schedule), tau: tauAt(it + 1, this.config.tau0, this.totalIters) };
  }

  get iterations(): number { return this.totalIters; }

  async train(): Promise<TrainResult> {
    try {
      await this.prepare();
      return await this.loop();
    } finally {
      // At the end and on error alike: an error here makes the other ranks fail at once instead
      // of waiting out the collective timeout.
      this.leaveJob();
    }
  }

  /**
   * True when the run must stop before the next iteration. In a job the ranks vote (one small
   * all-reduce, at the same point of every iteration), so all leave after the same step.
   */
  private async agreeStop(): Promise<boolean> {
    const ctx = this.ctx;
    if (!ctx) return this.stopReason !== null;
    if (this.stopReason) ctx.stop.request(this.stopReason);
    if (!(await ctx.stop.agreed(ctx.group))) return false;
    this.stopReason ??= ctx.stop.reason ?? 'another rank was asked to stop';
    return true;
  }

  /** This rank's loss and per-pair losses -> their mean over the ranks (the loss of the global batch). */
  private async globalLosses(loss: number, pairs: Record<string, number>): Promise<{ loss: number; pairs: Record<string, number> }> {
    const ctx = this.ctx;
    if (!ctx) return { loss, pairs };
    const names = Object.keys(pairs);
    const t = torch.tensor([loss, ...names.map((n) => pairs[n])], { dtype: 'float64' });
    const onDevice = t.to(ctx.group.device);
    try {
      await ctx.group.allReduce(onDevice, 'avg');
      const v = onDevice.toArray();
      return { loss: v[0], pairs: Object.fromEntries(names.map((n, i) => [n, v[i + 1]])) };
    } finally {
      if (onDevice !== t) onDevice.dispose();
      t.dispose();
    }
  }

  private async loop(): Promise<TrainResult> {
    const c = this.config;
    const data = this.data!;
    const model = this.model!;
    const opt = this.optimizer!;
    const ipe = data.itersPerEpoch;
    const main = this.isMain;
    const metrics = main ? new MetricsWriter(this.outDir, this.step) : null;
    const tensorboard = main ? new TensorBoardWriter(this.outDir, this.step) : null;
    const tp = new Throughput();
    const reducer = this.reducer;
    // Averages the gradients over the ranks between backward and the LARS update; the hooks start
    // each bucket's all-reduce during backward, and the loss roots let them skip unused parameters.
    const gradientSync: GradientSync | undefined = reducer
      ? { beforeBackward: (loss) => reducer.prepare(1, [loss]), afterBackward: () => { reducer.finishSync(); } }
      : undefined;
    let finalLoss = NaN;
    let collapseWarned = false;
    let lastSaved = -1;
    let stopping = false;
    try {
      while (this.step < this.totalIters && !stopping) {
        const epoch = Math.floor(this.step / ipe);
        const it = data.epoch(epoch, this.step % ipe);
        try {
          while (this.step < this.totalIters) {
            const t0 = performance.now();
            const next = await it.next();
            const waited = (performance.now() - t0) / 1000;
            if (next.done) {
              // The loader gives itersPerEpoch batches per epoch; fewer would repeat this epoch forever.
              throw new Error(`the loader ended epoch ${epoch} after ${this.step % ipe} of ${ipe} batches`);
            }
            const batch = next.value;
            // A signal that came during the last step or the wait is handled now, before the next
            // step starts: one turn of the event loop runs its handler (a prefetched batch
            // arrives without one, and the step itself is synchronous).
            await new Promise<void>((r) => setImmediate(r));
            if ((stopping = await this.agreeStop())) {
              batch.dispose();
              break;
            }
            const { lr, tau } = this.scheduleAt(this.step);
            const logNow = (this.step + 1) % c.logEvery === 0 || this.step + 1 === this.totalIters;
            let r;
            try {
              r = trainStep(model, opt, batch.views, batch.pairs, {
                lr, tau, normalization: c.lossNormalization, measureStd: logNow && main, step: this.step, lastCheckpoint: this.lastCheckpoint, gradientSync,
                precision: this.precision && { ...this.precision, lossScale: this.lossScale?.scale },
              });
              if (this.lossScale) this.lossScale = updateLossScale(this.lossScale, r.skipped);
            } finally {
              batch.dispose();
            }
            const g = await this.globalLosses(r.loss, r.pairs);
            this.step++;
            finalLoss = g.loss;
            tp.step(batch.images * this.worldSize, (performance.now() - t0) / 1000, waited);
            this.emit('iteration', { step: this.step, loss: g.loss, lr, tau, pairs: g.pairs });
            if (logNow && metrics) {
              const w = tp.window();
              const rec: MetricRecord = {
                iter: this.step, epoch: Math.floor((this.step - 1) / ipe), loss: g.loss, lr, tau,
                imagesPerSec: w.imagesPerSec, secPerIter: w.secPerIter, dataWaitFrac: w.dataWaitFrac,
                memoryMiB: residentMiB(), peakMemoryMiB: peakResidentMiB(), embeddingStd: r.embeddingStd, pairs: g.pairs, time: Date.now(),
                ...(this.device.startsWith('cuda') ? { deviceMemoryMiB: deviceMemoryMiB(this.device) } : {}),
                ...(this.lossScale ? { lossScale: this.lossScale.scale } : {}),
              };
              metrics.write(rec);
              tensorboard?.write(rec);
              const line = progressLine(rec, { epochs: Math.ceil(this.totalIters / ipe), totalIters: this.totalIters, etaSeconds: tp.meanStepSeconds * (this.totalIters - this.step) });
              this.emit('log', rec, line);
              if (isCollapsed(r.embeddingStd, c.embedDim) && !collapseWarned) {
                collapseWarned = true;
                this.emit('warning', `embedding std ${r.embeddingStd.toExponential(2)} at iteration ${this.step} is near 0: the representation is collapsing (Table 5(d): tau0 0.98 collapses; check tau0, lr and batch size)`);
              }
            }
            const epochEnd = this.step % ipe === 0;
            if (this.step === this.totalIters) { this.saveCheckpoint('end'); lastSaved = this.step; }
            else if (epochEnd && c.checkpointEveryEpochs > 0 && (this.step / ipe) % c.checkpointEveryEpochs === 0) { this.saveCheckpoint('epoch'); lastSaved = this.step; }
            else if (c.checkpointEvery > 0 && this.step % c.checkpointEvery === 0) { this.saveCheckpoint('interval'); lastSaved = this.step; }
            if (epochEnd) break;
          }
        } finally {
          await it.return?.();
        }
      }
      if (stopping && lastSaved !== this.step) { this.saveCheckpoint('stop'); lastSaved = this.step; }
      // The others wait for rank 0's last checkpoint: when they exit, the run's files are complete.
      if (this.ctx) await this.ctx.group.barrier();
    } finally {
      metrics?.close();
      tensorboard?.close();
    }
    return { steps: this.step, stoppedEarly: this.step < this.totalIters, lastCheckpoint: this.lastCheckpoint, finalLoss };
  }

  /**
   * Writes the online network's detector weights for Detectron2 (PyTorch zip, torch.load-able
   * with weights_only=True; lib/model's exportDetectron2 names) and a ready Mask R-CNN 1x
   * fine-tuning YAML next to it. Default: OUT/detectron2.pth and OUT/detectron2_mask_rcnn_1x.yaml.
   */
  exportDetectron2(file = path.join(this.outDir, 'detectron2.pth')): { weights: string; config: string } {
    if (!this.model) throw new Error('exportDetectron2: no model (call train() or prepare() first)');
    if (!this.isMain) throw new Error(`exportDetectron2: rank ${this.rank} of a job; rank 0 writes the export`);
    const exp = exportDetectron2(this.model);
    const weights = path.resolve(file);
    fs.mkdirSync(path.dirname(weights), { recursive: true });
    torch.save(weights, { ...exp.checkpoint } as unknown as Saveable);
    const config = weights.replace(/\.pth$/i, '') + '_mask_rcnn_1x.yaml';
    fs.writeFileSync(config, detectron2Yaml(exp.arch, weights, this.config.depth));
    return { weights, config };
  }

  /** Releases the loader, the model's tensors and this process's place in the job. */
  async close(): Promise<void> {
    this.leaveJob();
    await this.data?.close();
    this.data = null;
    this.optimizer?.dispose();
    if (this.model) for (const t of [...this.model.parameters(), ...this.model.buffers()]) t.dispose();
    this.model = null;
    this.optimizer = null;
    this.releaseOut();
  }
}

export { NonFiniteLossError };

function isResolved(x: unknown): x is ResolvedConfig {
  return typeof x === 'object' && x !== null && 'config' in x && 'origin' in x;
}
function isSources(x: unknown): x is ConfigSources {
  return typeof x === 'object' && x !== null && ('presets' in x || 'file' in x || 'overrides' in x);
}

function disposeDeep(v: unknown): void {
  if (v instanceof torch.Tensor) v.dispose();
  else if (Array.isArray(v)) v.forEach(disposeDeep);
  else if (v && typeof v === 'object') Object.values(v).forEach(disposeDeep);
}
