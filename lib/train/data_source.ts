// The trainer's view of lib/data: builds the SoCoLoader from a TrainConfig, checks the image
// folder and the proposal store before any work, and turns loader batches into model input.
import * as path from 'path';
import { Tensor, arange, cat, tidy } from '../torch';
import { SoCoView } from '../model';
import { SoCoLoader, Batch, disposeBatch } from '../data/loader';
import { DamagedStoreError, ProposalStore, openVerified } from '../data/proposal_store';
import { KeyForm, ProposalLookup } from '../data/proposal_keys';
import { GeometryOptions, PAPER_GEOMETRY } from '../data/views_geometry';
import { listImageFiles } from '../data/image_files';
import { TrainConfig } from './config';
import { ViewPair } from './step';

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
    multiView: c.arch === 'fpn' && c.multiView, levelThresholds: c.levelThresholds, boxPipeline: c.boxPipeline,
  };
}

const FORM_NAMES: Record<KeyForm, string> = { path: 'relative path', name: 'file name', stem: "file name without extension (the authors' keys)" };

/**
 * Opens the proposal store, verifies every record (lib/data/proposal_store openVerified: a damaged
 * store is refused naming its damaged records unless o.skipDamaged) and checks that it was made for
 * these images: a sample of up to 2000 files spread over the list must be found in it, by relative
 * path, file name or file name without extension (ProposalLookup). Images whose record would come
 * from a name that another image of the tree shares are an error: their boxes cannot be told apart.
 * Errors name both paths.
 */
export function openProposals(file: string, imagesDir: string, files: readonly string[],
  o: { skipDamaged?: boolean; skipFlag?: string; log?: (m: string) => void } = {}):
  { store: ProposalStore; lookup: ProposalLookup; coverage: number; forms: Record<KeyForm, number> } {
  const sample = 2000;
  let store: ProposalStore;
  try {
    store = openVerified(file, { skipDamaged: o.skipDamaged ?? false, skipFlag: o.skipFlag, log: o.log ?? ((m) => console.warn(m)) });
  } catch (e) {
    if (e instanceof DamagedStoreError) throw e;
    throw new Error(`--proposals ${file}: cannot open it as a proposal store (${(e as Error).message})`);
  }
  try {
    const lookup = new ProposalLookup(store, files);
    if (lookup.ambiguous.length) {
      const { form } = lookup.ambiguous[0];
      const shown = lookup.ambiguous.slice(0, 6).map((a) => a.file).join(', ');
      throw new Error(`--proposals ${file} is keyed by ${FORM_NAMES[form]}, and ${lookup.ambiguous.length} images of --images ${imagesDir} ` +
        `share such a name with another image, so their boxes cannot be told apart: ${shown}${lookup.ambiguous.length > 6 ? ', ...' : ''}. ` +
        'Key the store by relative path (soco-train proposals generate does; for a JSON, key it by the paths under --images and import it again) or rename those images.');
    }
    const step = Math.max(1, Math.floor(files.length / sample));
    const forms: Record<KeyForm, number> = { path: 0, name: 0, stem: 0 };
    let seen = 0;
    for (let i = 0; i < files.length; i += step) {
      seen++;
      const r = lookup.resolve(files[i]);
      if (r && 'key' in r) forms[r.form]++;
    }
    const hit = forms.path + forms.name + forms.stem;
    const coverage = hit / Math.max(1, seen);
    if (coverage < 0.5) {
      const root = typeof store.meta.root === 'string' ? ` (it was made from ${store.meta.root})` : '';
      throw new Error(`--proposals ${file} has boxes for ${hit} of ${seen} sampled images of --images ${imagesDir}${root}: ` +
        `it belongs to another image set. Generate one with \`soco-train proposals generate --images ${imagesDir} --out NEW_FILE\``);
    }
    return { store, lookup, coverage, forms };
  } catch (e) {
    store.close();
    throw e;
  }
}

/**
 * Loader batch -> the model's views, one per box set ([N*K, 5] boxes with the batch index; the
 * sets on V1 share its image, so one backbone pass), and the loss pairs. Paired by proposal id
 * (the authors' pipeline), a box with no level (-1) is pooled on P2 and its id masked to -1, so it
 * enters no pair.
 */
export function toTrainBatch(b: Batch): TrainBatch {
  const { views, pairs } = tidy(() => {
    const views: SoCoView[] = b.sets.map((s) => {
      const image = b.views[s.view];
      const [n, k] = s.boxes.shape;
      const idx = arange(0, n, 1, { dtype: 'float32', device: image.device }).view(n, 1, 1).expand(n, k, 1);
      return { image, boxes: cat([idx, s.boxes], 2).view(n * k, 5), levels: s.levels.clampMin(0).reshape(n * k) };
    });
    const ids = b.pairing === 'ids' ? b.sets.map((s) => s.ids.maskedFill(s.levels.lt(0), -1)) : null;
    const pairs: ViewPair[] = b.pairs.map((p) => ({ ...p, ...(ids ? { ids: [ids[p.a], ids[p.b]] as [Tensor, Tensor] } : {}) }));
    return { views, pairs };
  });
  return {
    views,
    pairs,
    images: b.images.length,
    dispose: () => {
      const own = new Set([...views.flatMap((v) => [v.boxes, v.levels]), ...pairs.flatMap((p) => p.ids ?? [])]);
      for (const t of own) t?.dispose();
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
  let lookup: ProposalLookup | null = null;
  if (c.proposalSource === 'selective-search') {
    const r = openProposals(c.proposals, c.images, files, { skipDamaged: c.skipDamagedProposals, skipFlag: '--skip-damaged-proposals', log });
    ({ store, lookup } = r);
    if (r.coverage < 1) log(`proposals: ${(100 * r.coverage).toFixed(1)}% of the sampled images have boxes; the others use the whole image`);
    for (const form of ['name', 'stem'] as const)
      if (r.forms[form]) log(`proposals: ${c.proposals} is keyed by ${FORM_NAMES[form]}; every name is unique under ${c.images}`);
  }
  const loader = new SoCoLoader({
    root, files, proposals: lookup, randomBoxes: c.proposalSource === 'random', batchSize: c.batchSize / shard.worldSize, seed: c.seed, prefetch: c.prefetch, device,
    workers: c.workers,
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

