// The SoCo data loader: epochs of batches {views, boxes, levels, ids} for one rank.
//
// Host stage (prefetched, `prefetch` batches ahead): decode every image of a batch in parallel on
// the libuv thread pool (lib/data/image.ts), straight to the V1 size (or at full resolution when
// views crop the raw image), draw the view geometry (lib/data/views_geometry.ts) and the
// augmentation parameters on the host, and assemble one uint8 batch tensor (pinned on CUDA).
// Device stage (when the batch is taken): upload, crop/resize the views (lib/data/views.ts),
// augment (lib/data/augment.ts). On CUDA the device stage only queues kernels.
//
// Reproducible: the epoch order comes from (seed, epoch), each image's views from (seed, epoch,
// image), so the same seed gives the same batches whatever the timing, prefetch depth or thread
// count. Robust: an unreadable image is logged once, counted and replaced by another image
// (deterministically); more than maxBadFraction of the data set unreadable stops the run with the
// list of files. Images without proposals use the whole-image fallback (counted).
import * as path from 'path';
import { Tensor, cuda, keep, tensor, tidy } from '../torch';
import { DecodedImage, decodeImage, setDecodeThreads } from './image';
import { ProposalRecord, RecordStatus } from './proposal_store';
import { SampleAugment, ViewAugmentation, augment, byolAugmentation, sampleAugment } from './augment';
import { Box, GeometryOptions, ImageViews, PAPER_GEOMETRY, Rng, mixSeed, randomBoxes, sampleViews, viewLayout } from './views_geometry';
import { renderViews, resizeImages, rgbTensor, stackRgb, toFloatImages } from './views';

/** What the loader needs of a proposal store (lib/data/proposal_store.ts ProposalStore). */
export interface ProposalSource {
  get(key: string): ProposalRecord | undefined;
}

export interface LoaderOptions {
  /** Image root; `files` are relative to it and are the proposal store's keys. */
  root: string;
  files: readonly string[];
  /** Proposals per image; null: every image uses the whole-image fallback (unless randomBoxes). */
  proposals: ProposalSource | null;
  /** Table 5(c) "Random": K random boxes per image (views_geometry randomBoxes) instead of
   * proposals; drawn once per image from (seed, key), so they stay put across epochs as an
   * offline proposal file would. Needs proposals null. */
  randomBoxes?: boolean;
  /** Images per batch on this rank. */
  batchSize: number;
  seed: number;
  rank?: number;
  worldSize?: number;
  /** Drop the last incomplete batch (default true: SoCo's batch-norm and LARS want full batches). */
  dropLast?: boolean;
  /** Batches prepared ahead on the host (default 2). */
  prefetch?: number;
  /** Images decoded at once: sets the process's decode threads (lib/data/image.ts
   * setDecodeThreads). Default: leave them as they are (4 unless set). */
  workers?: number;
  /** Training device: 'cpu', 'cuda', 'cuda:N' (default 'cpu'). */
  device?: string;
  geometry?: GeometryOptions;
  /** One per view (default BYOL's: byolAugmentation(i)). */
  augmentations?: ViewAugmentation[];
  /** Stop when more than this fraction of the data set is unreadable (default 0.01). */
  maxBadFraction?: number;
  /** Where warnings go (default console.warn). */
  log?: (message: string) => void;
  /** Paper layout: decode with JPEG DCT scaling only (to the smallest scale >= the V1 size) and
   * resize to V1 on the device, so the host only decodes. Default: true on CUDA, false on the
   * CPU (where the host does the PIL-exact resize, one tensor per batch). */
  resizeOnDevice?: boolean;
}

/** One batch; a plain object, so tidy() scopes that return it keep its tensors. */
export interface Batch {
  epoch: number;
  /** Batch number within the epoch on this rank. */
  index: number;
  /** Per view: [B, 3, h, w] float, augmented and normalised, on the device. */
  views: Tensor[];
  /** Per view: [B, K, 4] float32 boxes (x1, y1, x2, y2) in that view's pixels, flips applied
   * (the view's first box set's: sets[s].boxes of the first s on that view). */
  boxes: Tensor[];
  /** Per view: [B, K] int64 FPN level (0..3 = P2..P5; official: -1 = none), the first set's. */
  levels: Tensor[];
  /** [B, K] int64 proposal index per box (-1: fallback box), the same in every view (official:
   * sets[0]'s; the other sets carry their own). */
  ids: Tensor;
  /** Every box set (ImageViews.sets): the view it lies in, [B, K, 4] boxes, [B, K] levels and ids. */
  sets: BatchBoxSet[];
  /** The loss pairs of box sets, named after their views ('v1-v2', ...). */
  pairs: { name: string; a: number; b: number }[];
  /** How a pair's slots correspond: 'rows' (slot i with slot i) or 'ids' (equal proposal ids). */
  pairing: 'rows' | 'ids';
  /** Data set index of each image (after replacement of unreadable ones) and its key. */
  images: number[];
  keys: string[];
  /** Host copies, for pictures and debugging. */
  geometry: ImageViews[];
  augment: SampleAugment[][];
}

export interface BatchBoxSet { view: number; boxes: Tensor; levels: Tensor; ids: Tensor }

/** Frees every tensor of a batch (the per-view fields are sets' tensors). */
export function disposeBatch(b: Batch): void {
  const all = new Set([...b.views, ...b.boxes, ...b.levels, b.ids, ...b.sets.flatMap((s) => [s.boxes, s.levels, s.ids])]);
  for (const t of all) t.dispose();
}

export interface LoaderStats {
  /** Distinct unreadable files seen so far, with the reason. */
  unreadable: Map<string, string>;
  /** Images whose proposals were missing or failed (whole-image fallback). */
  missingProposals: number;
  /** Images where no proposal survived the crops (geometry fallback, ids = -1). */
  fallbacks: number;
  /** Images delivered. */
  images: number;
}

export class LoaderError extends Error {
  override name = 'LoaderError';
  constructor(message: string, readonly files: string[] = []) {
    super(message);
  }
}

interface HostSample {
  index: number;
  key: string;
  image: DecodedImage;
  geometry: ImageViews;
  augment: SampleAugment[];
  missingProposals: boolean;
}

interface HostBatch {
  epoch: number;
  index: number;
  samples: HostSample[];
  /** uint8 [B, S, S, 3] (paper layout, resized on the host), or one uint8 [H, W, 3] per image
   * (raw crops, or the paper layout resized on the device). */
  v1?: Tensor;
  sources?: Tensor[];
}

const AUGMENT_STREAM = 0x6175;  // separates the augmentation draws from the geometry draws
const ORDER_STREAM = 0x6f72;
const REPLACE_STREAM = 0x7265;
const RANDOM_BOX_STREAM = 0x7262;

/** FNV-1a of a string: an image key as a seed part that does not depend on the file list. */
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export class SoCoLoader {
  readonly options: Required<Omit<LoaderOptions, 'log' | 'workers'>> & { log: (m: string) => void };
  readonly stats: LoaderStats = { unreadable: new Map(), missingProposals: 0, fallbacks: 0, images: 0 };
  private readonly pin: boolean;

  constructor(o: LoaderOptions) {
    const geometry = o.geometry ?? PAPER_GEOMETRY;
    let nviews: number;
    try {
      nviews = viewLayout(geometry).length;
    } catch (e) {
      throw new LoaderError(`loader: ${(e as Error).message}`);
    }
    this.options = {
      root: o.root, files: o.files, proposals: o.proposals, randomBoxes: o.randomBoxes ?? false, batchSize: o.batchSize, seed: o.seed,
      rank: o.rank ?? 0, worldSize: o.worldSize ?? 1, dropLast: o.dropLast ?? true, prefetch: o.prefetch ?? 2,
      device: o.device ?? 'cpu', geometry, augmentations: o.augmentations ?? Array.from({ length: nviews }, (_, i) => byolAugmentation(i)),
      maxBadFraction: o.maxBadFraction ?? 0.01, log: o.log ?? ((m: string) => console.warn(m)),
      resizeOnDevice: o.resizeOnDevice ?? (o.device ?? 'cpu').startsWith('cuda'),
    };
    const { files, batchSize, rank, worldSize, prefetch, augmentations, maxBadFraction, seed } = this.options;
    if (!Array.isArray(files) || files.length === 0) throw new LoaderError('loader: files is empty: no images to load');
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new LoaderError(`loader: batchSize must be a positive integer, got ${batchSize}`);
    if (!(Number.isInteger(worldSize) && worldSize >= 1)) throw new LoaderError(`loader: worldSize must be a positive integer, got ${worldSize}`);
    if (!(Number.isInteger(rank) && rank >= 0 && rank < worldSize)) throw new LoaderError(`loader: rank must be in [0, ${worldSize}), got ${rank}`);
    if (!(Number.isInteger(prefetch) && prefetch >= 1)) throw new LoaderError(`loader: prefetch must be a positive integer, got ${prefetch}`);
    if (!Number.isInteger(seed)) throw new LoaderError(`loader: seed must be an integer, got ${seed}`);
    if (this.options.randomBoxes && this.options.proposals) throw new LoaderError('loader: randomBoxes replaces the proposals: pass proposals null');
    if (!(maxBadFraction >= 0 && maxBadFraction < 1)) throw new LoaderError(`loader: maxBadFraction must be in [0, 1), got ${maxBadFraction}`);
    if (augmentations.length !== nviews)
      throw new LoaderError(`loader: ${augmentations.length} augmentations for ${nviews} views (${geometry.arch}${geometry.socoStar ? ', SoCo*' : ''})`);
    if (o.workers !== undefined) {
      if (!(Number.isInteger(o.workers) && o.workers >= 1 && o.workers <= 1024)) throw new LoaderError(`loader: workers must be an integer in [1, 1024], got ${o.workers}`);
      setDecodeThreads(o.workers);
    }
    if (this.perRank() < batchSize && this.options.dropLast)
      throw new LoaderError(`loader: ${files.length} images over ${worldSize} rank(s) give ${this.perRank()} per rank, fewer than batchSize ${batchSize}`);
    this.pin = this.options.device.startsWith('cuda') && cuda.isAvailable();
  }

  /** Images per rank per epoch (the tail that does not divide evenly is dropped, as torch's
   * DistributedSampler(drop_last=True) does, so every rank takes the same number of steps). */
  private perRank(): number {
    return Math.floor(this.options.files.length / this.options.worldSize);
  }

  /** Batches per epoch on this rank. */
  get length(): number {
    const n = this.perRank();
    return this.options.dropLast ? Math.floor(n / this.options.batchSize) : Math.ceil(n / this.options.batchSize);
  }

  /** This rank's data set indices for `epoch`, batched. */
  plan(epoch: number): number[][] {
    const { files, seed, rank, worldSize, batchSize, dropLast } = this.options;
    const rng = new Rng(mixSeed(seed, epoch, ORDER_STREAM));
    const perm = Array.from({ length: files.length }, (_, i) => i);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const mine: number[] = [];
    for (let k = 0; k < this.perRank(); k++) mine.push(perm[k * worldSize + rank]);
    const batches: number[][] = [];
    for (let i = 0; i < mine.length; i += batchSize) {
      const b = mine.slice(i, i + batchSize);
      if (b.length === batchSize || !dropLast) batches.push(b);
    }
    return batches;
  }

  /**
   * The batches of one epoch from batch `startBatch` on (resuming mid-epoch): the same batches,
   * views and boxes as epoch(epoch) yields from that batch, since every image's randomness is a
   * function of (seed, epoch, image); the skipped batches are not decoded. The host stage runs
   * `prefetch` batches ahead.
   */
  async *epoch(epoch: number, startBatch = 0): AsyncGenerator<Batch> {
    for await (const hb of this.hostBatches(epoch, startBatch)) yield this.toDevice(hb);
  }

  /** The host stage alone (decode, geometry, parameters, assembly): what the CPU pays per batch
   * when the rest runs on the device. Exposed for the benchmark. */
  async *hostBatches(epoch: number, startBatch = 0): AsyncGenerator<HostBatch> {
    if (!(Number.isInteger(startBatch) && startBatch >= 0)) throw new LoaderError(`loader: startBatch must be a non-negative integer, got ${startBatch}`);
    const plan = this.plan(epoch);
    const queue: Promise<HostBatch>[] = [];
    const run = { cancelled: false };
    let next = startBatch;
    const fill = (): void => {
      while (queue.length < this.options.prefetch && next < plan.length) {
        const p = this.hostBatch(epoch, next, plan[next], run);
        p.catch(() => undefined);  // awaited below; keeps a failing prefetch from being "unhandled"
        queue.push(p);
        next++;
      }
    };
    try {
      fill();
      while (queue.length) {
        const hb = await (queue.shift() as Promise<HostBatch>);
        fill();
        yield hb;
      }
    } finally {
      // Abandoned early (break, error): prefetches still decoding stop before they touch the
      // proposals (the caller may close the store) or the statistics; finished ones are freed.
      run.cancelled = true;
      for (const p of queue) p.then(freeHost, () => undefined);
    }
  }

  private async hostBatch(epoch: number, index: number, indices: number[], run: { cancelled: boolean }): Promise<HostBatch> {
    const samples = await Promise.all(indices.map((i) => this.loadSample(epoch, i, run)));
    if (run.cancelled) throw new LoaderError('loader: prefetch cancelled');
    this.stats.images += samples.length;
    const hb: HostBatch = { epoch, index, samples };
    // Kept: the prefetch runs in whatever tidy scope the consumer happened to be in.
    if (this.options.geometry.cropFromRaw || this.options.resizeOnDevice) hb.sources = samples.map((s) => keep(rgbTensor(s.image, this.pin)));
    else hb.v1 = keep(stackRgb(samples.map((s) => s.image), this.pin));
    return hb;
  }

  /** Decodes image i (or its deterministic replacement when unreadable) and draws its views. */
  private async loadSample(epoch: number, i: number, run: { cancelled: boolean }): Promise<HostSample> {
    const { files, root, seed, geometry } = this.options;
    let j = i;
    for (let attempt = 0; ; attempt++) {
      const key = files[j];
      if (!this.stats.unreadable.has(key)) {
        let image: DecodedImage | undefined;
        let failure = '';
        try {
          const S = geometry.v1Size;
          image = await decodeImage(path.join(root, key), geometry.cropFromRaw ? undefined
            : this.options.resizeOnDevice ? { minWidth: S, minHeight: S } : { width: S, height: S });
        } catch (e) {
          failure = e instanceof Error ? e.message : String(e);
        }
        if (run.cancelled) throw new LoaderError('loader: prefetch cancelled');
        if (image) return this.sample(epoch, i, j, key, image);
        this.markUnreadable(key, failure);
      }
      if (attempt >= 1000 || this.stats.unreadable.size >= files.length)
        throw new LoaderError(`loader: no readable replacement found for ${files[i]}`, [...this.stats.unreadable.keys()]);
      j = new Rng(mixSeed(seed, epoch, i, attempt, REPLACE_STREAM)).int(files.length);
    }
  }

  private markUnreadable(key: string, reason: string): void {
    if (this.stats.unreadable.has(key)) return;
    this.stats.unreadable.set(key, reason);
    const n = this.stats.unreadable.size;
    const total = this.options.files.length;
    this.options.log(`loader: unreadable image ${key} (${reason}); replaced by another image [${n} unreadable so far]`);
    if (n > this.options.maxBadFraction * total) {
      const list = [...this.stats.unreadable].map(([f, r]) => `  ${f}: ${r}`).join('\n');
      throw new LoaderError(
        `loader: ${n} of ${total} images (${((100 * n) / total).toFixed(2)}%) are unreadable, more than ` +
        `${(100 * this.options.maxBadFraction).toFixed(2)}%; fix or remove them:\n${list}`, [...this.stats.unreadable.keys()]);
    }
  }

  private sample(epoch: number, i: number, j: number, key: string, image: DecodedImage): HostSample {
    const { seed, geometry, augmentations } = this.options;
    const W = image.originalWidth;
    const H = image.originalHeight;
    const rec = this.options.proposals?.get(key);
    const missingProposals = !this.options.randomBoxes && (!rec || rec.status !== RecordStatus.Ok);
    let boxes: Box[] = [];
    if (this.options.randomBoxes) {
      boxes = randomBoxes(new Rng(mixSeed(seed, hashKey(key), RANDOM_BOX_STREAM)), W, H, geometry.k);
    } else if (rec && !missingProposals) {
      // Boxes are in the original image's pixels; rescale if the store saw another size.
      const fx = rec.width > 0 ? W / rec.width : 1;
      const fy = rec.height > 0 ? H / rec.height : 1;
      for (let k = 0; k + 3 < rec.boxes.length; k += 4) {
        const b: Box = [rec.boxes[k] * fx, rec.boxes[k + 1] * fy, Math.min(W, rec.boxes[k + 2] * fx), Math.min(H, rec.boxes[k + 3] * fy)];
        if (b[2] > b[0] && b[3] > b[1]) boxes.push(b);
      }
    }
    if (missingProposals) this.stats.missingProposals++;
    const geo = sampleViews(new Rng(mixSeed(seed, epoch, i, j)), W, H, boxes, geometry);
    if (geo.fallback && !missingProposals) this.stats.fallbacks++;
    const arng = new Rng(mixSeed(seed, epoch, i, j, AUGMENT_STREAM));
    const aug = geo.views.map((v, k) => sampleAugment(arng, augmentations[k], v.flip));
    return { index: j, key, image, geometry: geo, augment: aug, missingProposals };
  }

  /** The device stage: upload, render the views, augment. */
  toDevice(hb: HostBatch): Batch {
    const { device, geometry, augmentations } = this.options;
    try {
      return tidy(() => {
        const geoms = hb.samples.map((s) => s.geometry);
        const S = geometry.v1Size;
        const input = hb.v1 ? { v1: toFloatImages(hb.v1, device) }
          : geometry.cropFromRaw ? { sources: (hb.sources as Tensor[]).map((t) => toFloatImages(t, device)) }
          : { v1: resizeImages((hb.sources as Tensor[]).map((t) => toFloatImages(t, device)), S, S) };
        const raw = renderViews(input, geoms, geometry.v1Size);
        const views = raw.map((x, v) => augment(x, hb.samples.map((s) => s.augment[v]), augmentations[v]));
        const b = geoms.length;
        const k = geometry.k;
        // The box sets lie in the same views for every image (the layout depends on the options only).
        const layout = geoms[0].sets.map((s) => s.view);
        const int64 = (values: number[]): Tensor => tensor(BigInt64Array.from(values, BigInt), { shape: [b, k] }).to(device);
        const sets: BatchBoxSet[] = layout.map((view, s) => {
          const flat = new Float32Array(b * k * 4);
          geoms.forEach((g, i) => g.sets[s].boxes.forEach((bx, j) => flat.set(bx, (i * k + j) * 4)));
          return {
            view, boxes: tensor(flat, { shape: [b, k, 4] }).to(device),
            levels: int64(geoms.flatMap((g) => g.sets[s].levels)), ids: int64(geoms.flatMap((g) => g.sets[s].ids)),
          };
        });
        const first = raw.map((_, v) => sets[layout.indexOf(v)]);
        const name = (s: number): string => geoms[0].views[layout[s]].name;
        return {
          epoch: hb.epoch, index: hb.index, views, boxes: first.map((s) => s.boxes), levels: first.map((s) => s.levels), ids: sets[0].ids,
          sets, pairs: geoms[0].pairs.map(([a, c]) => ({ name: `${name(a)}-${name(c)}`, a, b: c })),
          pairing: geometry.boxPipeline === 'official' ? 'ids' : 'rows',
          images: hb.samples.map((s) => s.index), keys: hb.samples.map((s) => s.key),
          geometry: geoms, augment: geoms[0].views.map((_, v) => hb.samples.map((s) => s.augment[v])),
        };
      });
    } finally {
      freeHost(hb);
    }
  }
}

function freeHost(hb: HostBatch): void {
  hb.v1?.dispose();
  for (const t of hb.sources ?? []) t.dispose();
}

export type { HostBatch };
