// View pipeline benchmarks against PIL + torchvision (bench/views_ref.py, which documents the
// reference's side in detail), on the same real photos (test/fixtures/images) with the same
// proposals (a store of 200 boxes per photo; the reference reads the same boxes), as CPU seconds
// per image (user + system, all threads: core-seconds, so the decode threads count in full),
// one intra-op thread, everything on the CPU:
//
// `views-vs-torchvision`: the authors' layout on both sides, what their code pays per image: a
//   full-size decode; V1 the whole image at 224, V2 (224) and V3 (112) random crops of the raw
//   image; K = 4 proposals common to the views (kept when they intersect, clipped), V1 box
//   jitter; per view flip and the BYOL augmentations (colour jitter, grayscale, blur, solarize,
//   normalise); the batch's views stacked (ours: SoCoLoader.epoch, preset official's geometry).
// `views-paper-vs-torchvision`: the paper's layout on both sides: the JPEG decoded with DCT
//   scaling to the smallest scale >= 224 (PIL: draft()) and resized to V1; V2 a crop of V1, V3 V2
//   at 112; proposals inside the views; the same augmentations (ours: SoCoLoader.epoch).
// `loader-host-vs-pil`: the host stage of the paper's layout when the views are cut and augmented
//   on the training device (CUDA): the DCT-scaled decode into a uint8 tensor per image, every
//   random draw and the box arithmetic, on both sides; the crops, resizes and augmentations run
//   later on the device and are counted on neither side (ours: SoCoLoader.hostBatches).
//
// Warm-up, the same on both sides: WARMUP_EPOCHS passes over the photos before the first timed
// one (ours needs them: V8 compiles the per-image JS in tiers over the first few hundred images;
// the reference gets the same). Then ROUNDS rounds alternate, each REPS passes of ours then REPS
// of the reference; each side's figure is the median over rounds of its median pass.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readImageSize } from '../lib/data/image';
import { ProposalStore, ProposalStoreWriter } from '../lib/data/proposal_store';
import { SoCoLoader, disposeBatch } from '../lib/data/loader';
import { GeometryOptions, PAPER_GEOMETRY, Rng, officialGeometry } from '../lib/data/views_geometry';
import { setNumThreads } from '../lib/torch';
import { listImageFiles } from '../lib/data/image_files';
import { SYSTEM_PYTHON } from '../test/reference/python';
import { PythonServer, median, report } from './util';

const ROOT = path.resolve(__dirname, '..', '..');
const IMAGES = path.join(ROOT, 'test', 'fixtures', 'images');
const ROUNDS = 5;
const REPS = 3;
const WARMUP_EPOCHS = 40;

type Layout = 'authors' | 'paper' | 'host';

/** A proposal store with 200 plausible boxes per photo, and the same boxes as JSON for the reference. */
async function syntheticProposals(dir: string, files: string[]): Promise<{ store: ProposalStore; json: string }> {
  const file = path.join(dir, 'bench.store');
  const w = ProposalStoreWriter.open(file, { bench: true });
  const all: Record<string, number[]> = {};
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
    all[path.join(IMAGES, key)] = boxes;
  }
  w.close();
  const json = path.join(dir, 'proposals.json');
  fs.writeFileSync(json, JSON.stringify(all));
  return { store: ProposalStore.open(file), json };
}

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};

/** One line: ours (`pass(e)` runs epoch e and returns its image count) against the reference's `layout`. */
async function compare(name: string, layout: Layout, geometry: GeometryOptions, resizeOnDevice: boolean,
  pass: (loader: SoCoLoader, e: number) => Promise<number>): Promise<void> {
  setNumThreads(1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-bench-views-'));
  const files = listImageFiles(IMAGES);
  const { store, json } = await syntheticProposals(dir, files);
  const ref = new PythonServer(path.join(ROOT, 'bench', 'views_ref.py'), [json, ...files.map((f) => path.join(IMAGES, f))], SYSTEM_PYTHON);
  try {
    const loader = new SoCoLoader({ root: IMAGES, files, proposals: store, batchSize: files.length, seed: 0, device: 'cpu', prefetch: 2, geometry, resizeOnDevice });
    let e = 0;
    while (e < WARMUP_EPOCHS) await pass(loader, e++);
    await ref.ask(`warmup ${layout} ${WARMUP_EPOCHS}`);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const times: number[] = [];
      for (let r = 0; r < REPS; r++) {
        const t0 = process.cpuUsage();
        const n = await pass(loader, e++);
        times.push(cpuSeconds(t0) / n);
      }
      ours.push(median(times));
      theirs.push(Number(await ref.ask(`time ${layout} ${REPS}`)));
    }
    report(name, median(ours) * 1e3, median(theirs) * 1e3, 'ms/img', false);
  } finally {
    ref.close();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Whole epochs on the CPU: decode, views, augmentations, batches. */
async function wholeEpoch(loader: SoCoLoader, e: number): Promise<number> {
  let n = 0;
  for await (const b of loader.epoch(e)) {
    n += b.keys.length;
    disposeBatch(b);
  }
  return n;
}

export async function runAuthors(): Promise<void> {
  await compare('views-vs-torchvision', 'authors', officialGeometry('fpn'), false, wholeEpoch);
}

export async function runPaper(): Promise<void> {
  await compare('views-paper-vs-torchvision', 'paper', PAPER_GEOMETRY, false, wholeEpoch);
}

export async function runHost(): Promise<void> {
  await compare('loader-host-vs-pil', 'host', PAPER_GEOMETRY, true, async (loader, e) => {
    let n = 0;
    for await (const hb of loader.hostBatches(e)) {
      n += hb.samples.length;
      hb.v1?.dispose();
      for (const t of hb.sources ?? []) t.dispose();
    }
    return n;
  });
}

if (require.main === module) {
  (async () => {
    await runAuthors();
    await runPaper();
    await runHost();
  })().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
