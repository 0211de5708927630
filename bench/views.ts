// View pipeline benchmarks against the authors' PIL + torchvision pipeline (bench/views_ref.py), on
// the same real photos (test/fixtures/images), measured as CPU time per image (user + system, all
// threads: core-seconds, so the decode threads count in full) in the same run, in alternating
// rounds:
//
// `loader-host-vs-torchvision`: what the host pays per image when the augmentations run on the
//   training device: decode (JPEG DCT-scaled to the smallest scale >= the V1 size; the exact
//   resize to V1 runs on the device), proposal lookup, view geometry, augmentation parameters,
//   batch assembly into pinned tensors where CUDA exists (SoCoLoader.hostBatches).
// `views-vs-torchvision`: everything on the CPU, one intra-op thread: the above plus crops,
//   resizes and the batched BYOL augmentations (SoCoLoader.epoch on 'cpu').
//
// The reference does the whole pipeline per image with PIL (decode, resize, crops, ColorJitter,
// grayscale, PIL Gaussian blur, solarize, ToTensor, Normalize). Ours runs the paper's layout
// (V2, V3 cropped from V1); the reference the authors' (crops of the raw image), as they ran it.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readImageSize } from '../lib/data/image';
import { ProposalStore, ProposalStoreWriter } from '../lib/data/proposal_store';
import { SoCoLoader, disposeBatch } from '../lib/data/loader';
import { Rng } from '../lib/data/views_geometry';
import { setNumThreads } from '../lib/torch';
import { listImages } from '../lib/cli/proposals';
import type { BenchOptions } from './index';
import { python, report } from './util';

const ROOT = path.resolve(__dirname, '..', '..');
const IMAGES = path.join(ROOT, 'test', 'fixtures', 'images');
// Ours and the reference alternate, ROUNDS times REPS each (15 measurements a side, as one block
// each before), so a change in the load of a shared machine hits both sides alike.
const ROUNDS = 5;
const REPS = 3;
// Ours is measured warm, as a training run sees it: V8 compiles the per-image JS (geometry,
// proposal lookup) in tiers over the first few hundred images, which costs up to ~1.5 ms/img
// more in the first epochs of 14 photos; a run decodes millions. The reference warms up once.
const WARMUP_EPOCHS = 40;

/** A proposal store with 200 plausible boxes per photo (lookups cost what real ones do). */
async function syntheticStore(dir: string, files: string[]): Promise<ProposalStore> {
  const file = path.join(dir, 'bench.store');
  const w = ProposalStoreWriter.open(file, { bench: true });
  for (const [n, key] of files.entries()) {
    const { width: W, height: H } = await readImageSize(path.join(IMAGES, key));
    const rng = new Rng(n + 1);
    const boxes: number[] = [];
    for (let b = 0; b < 200; b++) {
      const bw = Math.max(32, Math.floor(W * rng.uniform(0.3, 0.8)));
      const bh = Math.max(32, Math.floor(H * rng.uniform(0.3, 0.8)));
      const x = rng.int(Math.max(1, W - bw + 1));
      const y = rng.int(Math.max(1, H - bh + 1));
      boxes.push(x, y, Math.min(W, x + bw), Math.min(H, y + bh));
    }
    w.append(key, { boxes, width: W, height: H, rawCount: 200, uniqueCount: 200, filterStage: 0, millis: 0 });
  }
  w.close();
  return ProposalStore.open(file);
}

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * CPU seconds per image of `epoch(e)` (ours) and of the reference, each the median over ROUNDS
 * alternating rounds (ours: the median of REPS epochs; the reference: of REPS passes).
 */
async function perImage(files: string[], epoch: (e: number) => Promise<number>): Promise<[number, number]> {
  let e = 0;
  while (e < WARMUP_EPOCHS) await epoch(e++);  // page cache, lazy initialisation, JIT tiers
  const ours: number[] = [];
  const ref: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const times: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = process.cpuUsage();
      const n = await epoch(e++);
      times.push(cpuSeconds(t0) / n);
    }
    ours.push(median(times));
    ref.push(reference(files));
  }
  return [median(ours), median(ref)];
}

async function withLoader(device: string, resizeOnDevice: boolean, fn: (loader: SoCoLoader, files: string[]) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-bench-views-'));
  const files = listImages(IMAGES);
  const store = await syntheticStore(dir, files);
  try {
    const loader = new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: files.length, seed: 0, device, prefetch: 2, resizeOnDevice });
    await fn(loader, files);
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function reference(files: string[]): number {
  return Number(python(path.join(ROOT, 'bench', 'views_ref.py'), [String(REPS), ...files.map((f) => path.join(IMAGES, f))]).trim());
}

export async function runHost(opts: BenchOptions): Promise<void> {
  setNumThreads(1);
  // As configured for a training device: the V1 resize runs there too, the host only decodes.
  await withLoader(opts.device, true, async (loader, files) => {
    const [ours, ref] = await perImage(files, async (e) => {
      let n = 0;
      for await (const hb of loader.hostBatches(e)) {
        n += hb.samples.length;
        hb.v1?.dispose();
        for (const t of hb.sources ?? []) t.dispose();
      }
      return n;
    });
    report('loader-host-vs-torchvision', ours * 1e3, ref * 1e3, 'ms/img', false);
  });
}

export async function runAll(): Promise<void> {
  setNumThreads(1);
  await withLoader('cpu', false, async (loader, files) => {
    const [ours, ref] = await perImage(files, async (e) => {
      let n = 0;
      for await (const b of loader.epoch(e)) {
        n += b.keys.length;
        disposeBatch(b);
      }
      return n;
    });
    report('views-vs-torchvision', ours * 1e3, ref * 1e3, 'ms/img', false);
  });
}

if (require.main === module) {
  (async () => {
    await runHost({ device: 'cpu' });
    await runAll();
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
