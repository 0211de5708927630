// The trainer's view of lib/data: builds the SoCoLoader from a TrainConfig, checks the image
// folder and the proposal store before any work, and turns loader batches into model input.
import * as path from 'path';
import { arange, cat, tidy } from '../torch';
import { SoCoView } from '../model';
import { SoCoLoader, Batch, disposeBatch } from '../data/loader';
import { ProposalStore } from '../data/proposal_store';
import { GeometryOptions, PAPER_GEOMETRY } from '../data/views_geometry';
import { listImageFiles } from '../data/image_files';
import { TrainConfig } from './config';
import { ViewPair, anchorPairs } from './step';

/** One batch as the trainer consumes it (built from lib/data's loader by the data adapter). */
export interface TrainBatch {
  views: SoCoView[];
  pairs: ViewPair[];
  /** Images in this batch (this process). */
  images: number;
  /** Frees the batch's tensors. */
  dispose(): void;
}

/** Deterministic batches: epoch e from iteration i gives the same batches in every run. */
export interface BatchSource {
  readonly numImages: number;
  readonly itersPerEpoch: number;
  epoch(e: number, startIter: number): AsyncIterator<TrainBatch>;
  close(): Promise<void>;
}

/** The image list of --images (lib/data listImageFiles; re-exported for the trainer's users). */
export { listImageFiles };

export function geometryOptions(c: TrainConfig): GeometryOptions {
  return {
    ...PAPER_GEOMETRY,
    arch: c.arch, socoStar: c.socoStar, k: c.k, cropScale: c.cropScale, cropRatio: c.cropRatio, cropFromRaw: c.cropFromRaw,
    layout: c.viewLayout, keepClipped: c.keepClipped, jitter: c.jitter, jitterProb: c.jitterProb, jitterRange: c.jitterRange,
    flipProb: c.flipProb, v1Size: c.v1Size, v2Size: c.v2Size, v3Size: c.v3Size, v4Size: c.v4Size,
    multiView: c.arch === 'fpn' && c.multiView, levelThresholds: c.levelThresholds,
  };
}

/**
 * Opens the proposal store and checks that it was made for these images: a sample of up to
 * `sample` files spread over the list must be found in it. Fails naming both paths otherwise.
 */
export function openProposals(file: string, imagesDir: string, files: readonly string[], sample = 2000): { store: ProposalStore; coverage: number } {
  let store: ProposalStore;
  try {
    store = ProposalStore.open(file);
  } catch (e) {
    throw new Error(`--proposals ${file}: cannot open it as a proposal store (${(e as Error).message})`);
  }
  const step = Math.max(1, Math.floor(files.length / sample));
  let seen = 0;
  let hit = 0;
  for (let i = 0; i < files.length; i += step) {
    seen++;
    if (store.has(files[i])) hit++;
  }
  const coverage = hit / Math.max(1, seen);
  if (coverage < 0.5) {
    const root = typeof store.meta.root === 'string' ? ` (it was made from ${store.meta.root})` : '';
    throw new Error(`--proposals ${file} has boxes for ${hit} of ${seen} sampled images of --images ${imagesDir}${root}: ` +
      `it belongs to another image set. Generate one with \`soco-train proposals generate --images ${imagesDir} --out NEW_FILE\``);
  }
  return { store, coverage };
}

/** Loader batch -> the model's views ([N*K, 5] boxes with the batch index) and the loss pairs. */
export function toTrainBatch(b: Batch): TrainBatch {
  const views: SoCoView[] = tidy(() => b.views.map((image, v) => {
    const [n, k] = b.boxes[v].shape;
    const idx = arange(0, n, 1, { dtype: 'float32', device: image.device }).view(n, 1, 1).expand(n, k, 1);
    return { image, boxes: cat([idx, b.boxes[v]], 2).view(n * k, 5), levels: b.levels[v].reshape(n * k) };
  }));
  return {
    views,
    pairs: anchorPairs(views.length),
    images: b.images.length,
    dispose: () => {
      for (const v of views) { v.boxes.dispose(); v.levels?.dispose(); }
      disposeBatch(b);
    },
  };
}

export interface DataSourceInfo { files: number; proposalCoverage: number | null; log: (m: string) => void }

/** This process's share of the data: rank r of worldSize draws batchSize / worldSize images per step. */
export interface Shard { rank: number; worldSize: number }

/** A BatchSource over lib/data's SoCoLoader for one process; c.batchSize is the global batch. */
export async function createBatchSource(c: TrainConfig, device: string, log: (m: string) => void = (m) => console.warn(m),
  shard: Shard = { rank: 0, worldSize: 1 }): Promise<BatchSource> {
  if (c.batchSize % shard.worldSize !== 0) {
    throw new Error(`--batch-size ${c.batchSize} is the global batch: it must divide by the ${shard.worldSize} processes`);
  }
  const root = path.resolve(c.images);
  const files = listImageFiles(root);
  if (files.length === 0) throw new Error(`--images ${c.images}: no .jpg/.jpeg/.png/.webp files in it`);
  let store: ProposalStore | null = null;
  if (c.proposalSource === 'selective-search') {
    const r = openProposals(c.proposals, c.images, files);
    store = r.store;
    if (r.coverage < 1) log(`proposals: ${(100 * r.coverage).toFixed(1)}% of the sampled images have boxes; the others use the whole image`);
  }
  const loader = new SoCoLoader({
    root, files, proposals: store, randomBoxes: c.proposalSource === 'random', batchSize: c.batchSize / shard.worldSize, seed: c.seed, prefetch: c.prefetch, device,
    rank: shard.rank, worldSize: shard.worldSize,
    geometry: geometryOptions(c), log,
  });
  return {
    numImages: files.length,
    itersPerEpoch: loader.length,
    epoch(e: number, startIter: number): AsyncIterator<TrainBatch> {
      // Resume mid-epoch: the loader starts at batch startIter without decoding the ones before
      // it, and those batches are the ones the uninterrupted epoch would give.
      const gen = loader.epoch(e, startIter);
      return {
        async next(): Promise<IteratorResult<TrainBatch>> {
          const r = await gen.next();
          if (r.done) return { done: true, value: undefined };
          return { done: false, value: toTrainBatch(r.value) };
        },
        async return(): Promise<IteratorResult<TrainBatch>> {
          await gen.return(undefined);
          return { done: true, value: undefined };
        },
      };
    },
    async close(): Promise<void> { store?.close(); },
  };
}

