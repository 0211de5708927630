// `soco-train proposals generate|verify|export|import|show`: selective-search proposals for an
// image tree into a proposal store (lib/data/proposal_store.ts), its check, conversions to and
// from the authors' JSON, and pictures of boxes and statistics (paper Figures 2 and 3). The
// commands that write a store hold its lock (STORE.lock, lib/io/lock.ts): one writer at a time.
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { positiveInt } from './options';
import { checkOutputPath } from '../io/output_path';
import * as zlib from 'zlib';
import { decodeImage, isImageDecodeError, readImageSize, setDecodeThreads } from '../data/image';
import { imageOrderKey, listImageFiles } from '../data/image_files';
import { Rng } from '../data/views_geometry';
import {
  ProposalRecord, ProposalStore, ProposalStoreWriter, RecordStatus, describeDamage, openVerified, readAuthorsJson,
  repairCommand, writeAuthorsJson,
} from '../data/proposal_store';
import { describeRemoved, removeStaleTemps, tempPathFor, writeFileAtomic } from '../io/temp_files';
import { OutputLock, acquireLock, describeOwner, lockOwner } from '../io/lock';
import { PRESETS, PresetName, SelectiveSearchParams, fromAuthorsRects, selectiveSearch } from '../data/selective_search';

function nonNegInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}
function positiveNum(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
    return n;
  };
}

/** Image files under root, sorted, as '/'-separated paths relative to root (lib/data listImageFiles). */
export const listImages = listImageFiles;

const fmtTime = (s: number): string => {
  if (!Number.isFinite(s)) return '--:--:--';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = Math.floor(s % 60);
  return `${h}:${String(m).padStart(2, '0')}:${String(x).padStart(2, '0')}`;
};

/** Streaming statistics over integer-binned values (memory independent of the count). */
class Stats {
  private readonly hist = new Map<number, number>();
  n = 0; sum = 0; min = Infinity; max = -Infinity;
  add(v: number): void {
    this.n++; this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    const b = Math.floor(v);
    this.hist.set(b, (this.hist.get(b) ?? 0) + 1);
  }
  /** Median to 1 unit of resolution. */
  median(): number {
    let seen = 0;
    for (const [b, c] of [...this.hist].sort((a, b) => a[0] - b[0])) { seen += c; if (seen * 2 >= this.n) return b; }
    return 0;
  }
  toString(digits = 1): string {
    if (!this.n) return '-';
    return `mean ${(this.sum / this.n).toFixed(digits)} median ${this.median()} min ${this.min.toFixed(digits)} max ${this.max.toFixed(digits)}`;
  }
}

/** Summary statistics of a store (printed at the end of every command). */
export function storeSummary(store: ProposalStore): string {
  const perImage = new Stats(), sizes = new Stats();
  const stages = new Map<number, number>();
  let failed = 0, empty = 0, millis = 0;
  const reasons = new Map<string, number>();
  for (const r of store.entries()) {
    if (r.status === RecordStatus.Failed) {
      failed++;
      const why = (r.reason ?? '').split(':')[0].slice(0, 60);
      reasons.set(why, (reasons.get(why) ?? 0) + 1);
      continue;
    }
    perImage.add(r.boxes.length / 4);
    if (r.boxes.length === 0) empty++;
    stages.set(r.filterStage, (stages.get(r.filterStage) ?? 0) + 1);
    millis += r.millis;
    for (let i = 0; i < r.boxes.length; i += 4) sizes.add(Math.sqrt((r.boxes[i + 2] - r.boxes[i]) * (r.boxes[i + 3] - r.boxes[i + 1])));
  }
  const stageName: Record<number, string> = { [-1]: 'unfiltered', 0: 'ratio3size0308', 1: 'ratio fallback', 2: 'w,h>=32 fallback', 3: 'none left' };
  const lines = [
    `store ${store.file}: ${store.size} images, ${perImage.n} with proposals, ${failed} failed, ${empty} with zero boxes (the whole image stands in)`,
    `  boxes/image: ${perImage.toString(1)}; total ${sizes.n}`,
    `  sqrt(wh) px: ${sizes.toString(1)}`,
    `  filter: ${[...stages].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${stageName[k] ?? k} ${n}`).join(', ') || '-'}`,
    `  file: ${(fs.statSync(store.file).size / 2 ** 20).toFixed(1)} MiB (+ index ${(fs.statSync(`${store.file}.idx`).size / 2 ** 20).toFixed(1)} MiB)` +
      (perImage.n && millis > 0 ? `; mean ${(millis / perImage.n).toFixed(1)} ms/image of worker time` : ''),
  ];
  if (failed) lines.push(`  failures: ${[...reasons].map(([k, n]) => `${k || 'unknown'} ${n}`).join(', ')}`);
  return lines.join('\n');
}

/** Takes the store's writer lock (STORE.lock), then removes what dead writers left next to it. */
function lockStore(out: string, command: string, log: (m: string) => void): OutputLock {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  const lock = acquireLock(`${out}.lock`, { what: `--out ${out}`, command, log });
  const note = describeRemoved(removeStaleTemps(path.dirname(path.resolve(out)), out));
  if (note) log(`note: ${note}`);
  return lock;
}

/** The failed records of a store, in image order. */
function failures(store: ProposalStore): [string, string][] {
  const out: [string, string][] = [];
  for (const r of store.entries({ boxes: false })) if (r.status === RecordStatus.Failed) out.push([r.key, r.reason ?? 'unknown']);
  return out.sort((a, b) => { const x = imageOrderKey(a[0]), y = imageOrderKey(b[0]); return x < y ? -1 : x > y ? 1 : 0; });
}

/** Where `generate` lists every image that could not be read: STORE.failures.tsv (key, reason). */
export const failuresFile = (store: string): string => `${store}.failures.tsv`;

interface GenerateOpts {
  images: string; out: string; workers: number; preset: PresetName; scale?: number; sigma?: number;
  minSize?: number; maxSide: number; filter: boolean; quiet?: boolean;
}

/** Runs selective search on one image file; boxes in original-image pixels. */
async function proposeFile(file: string, p: SelectiveSearchParams, maxSide: number) {
  let target: { width: number; height: number } | undefined;
  let full = { width: 0, height: 0 };
  if (maxSide > 0) {
    const sz = await readImageSize(file);
    full = sz;
    const m = Math.max(sz.width, sz.height);
    if (m > maxSide) target = { width: Math.max(1, Math.round(sz.width * maxSide / m)), height: Math.max(1, Math.round(sz.height * maxSide / m)) };
  }
  const img = await decodeImage(file, target);
  if (!target) full = { width: img.width, height: img.height };
  const r = await selectiveSearch(img.data, img.width, img.height, p);
  let boxes = r.boxes;
  if (target) {  // back to original pixels: outward rounding keeps the region inside the box
    const fx = full.width / img.width, fy = full.height / img.height;
    boxes = new Int32Array(r.boxes.length);
    for (let i = 0; i < boxes.length; i += 4) {
      boxes[i] = Math.floor(r.boxes[i] * fx);
      boxes[i + 1] = Math.floor(r.boxes[i + 1] * fy);
      boxes[i + 2] = Math.min(full.width, Math.ceil(r.boxes[i + 2] * fx));
      boxes[i + 3] = Math.min(full.height, Math.ceil(r.boxes[i + 3] * fy));
    }
  }
  return { ...r, boxes, width: full.width, height: full.height };
}

export async function generate(o: GenerateOpts): Promise<{ done: number; failed: number; interrupted: boolean }> {
  const base = PRESETS[o.preset];
  if (!base) throw new Error(`--preset must be paper or official, got ${o.preset}`);
  const params: SelectiveSearchParams = {
    scale: o.scale ?? base.scale, sigma: o.sigma ?? base.sigma, minSize: o.minSize ?? base.minSize, filter: o.filter,
  };
  if (!fs.existsSync(o.images) || !fs.statSync(o.images).isDirectory()) throw new Error(`--images ${o.images}: not a directory`);
  const log = (s: string): void => { if (!o.quiet) process.stderr.write(s); };
  const files = listImages(o.images);
  if (files.length === 0) throw new Error(`--images ${o.images}: no .jpg/.jpeg/.png/.webp files in it (searched recursively)`);
  const meta = { format: 'soco-train proposals 1', algorithm: 'selective-search (skimage felzenszwalb + authors grouping)',
    scale: params.scale, sigma: params.sigma, minSize: params.minSize, filter: params.filter ? 'ratio3size0308' : 'none', maxSide: o.maxSide };
  const lock = lockStore(o.out, 'proposals generate', (m) => log(`proposals: ${m}\n`));
  try {
    return await generateLocked(o, params, meta, files, log);
  } finally {
    lock.release();
  }
}

async function generateLocked(o: GenerateOpts, params: SelectiveSearchParams, meta: Record<string, unknown>, files: string[],
  log: (s: string) => void): Promise<{ done: number; failed: number; interrupted: boolean }> {
  const writer = ProposalStoreWriter.open(o.out, meta);
  if (writer.tornBytes) log(`proposals: cut an unfinished record of ${writer.tornBytes} bytes off the end of ${o.out} (an interrupted run)\n`);
  if (writer.dropped.length) {
    log(`proposals: dropped ${writer.dropped.length} damaged record(s) of ${o.out}, kept its ${writer.count} good ones; the damaged images are redone:\n` +
      writer.dropped.map((d) => `  ${describeDamage(d)}\n`).join(''));
  }
  const todo = files.filter((f) => !writer.has(f));
  log(`proposals: ${files.length} images under ${o.images}, ${files.length - todo.length} already in ${o.out}, ${todo.length} to do, ${o.workers} workers\n`);

  let next = 0, done = 0, failed = 0, stopping = false;
  const t0 = Date.now();
  const progress = (final = false): void => {
    const el = (Date.now() - t0) / 1000, rate = done / Math.max(el, 1e-9);
    const line = `proposals: ${done}/${todo.length} images  ${rate.toFixed(1)} img/s  ETA ${fmtTime((todo.length - done) / rate)}  failures ${failed}`;
    if (process.stderr.isTTY) log(`\r${line}${final ? '\n' : ''}`);
    else log(`${line}\n`);
  };
  const timer = setInterval(() => progress(), process.stderr.isTTY ? 1000 : 10000);
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      stopping = true;
      log(`\nproposals: interrupted; finishing the ${o.workers} images in flight (Ctrl-C again to quit now; the store stays valid)\n`);
    } else {
      process.exit(130);  // every record written so far is intact; the index is rebuilt on open
    }
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const worker = async (): Promise<void> => {
    while (!stopping && next < todo.length) {
      const key = todo[next++];
      const t = Date.now();
      try {
        const r = await proposeFile(path.join(o.images, key), params, o.maxSide);
        writer.append(key, { boxes: r.boxes, width: r.width, height: r.height, rawCount: r.rawCount, uniqueCount: r.uniqueCount, filterStage: r.filterStage, millis: Date.now() - t });
      } catch (e) {
        failed++;
        // "CODE: message" so that summaries can count failures by kind
        const why = isImageDecodeError(e) ? `${e.code}: ${e.message}` : `ERROR: ${e instanceof Error ? e.message : String(e)}`;
        writer.appendFailure(key, why, Date.now() - t);
      }
      done++;
    }
  };
  try {
    await Promise.all(Array.from({ length: o.workers }, worker));
  } finally {
    clearInterval(timer);
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    writer.close();
  }
  progress(true);
  const el = (Date.now() - t0) / 1000;
  log(`proposals: ${done} images in ${fmtTime(el)} (${(done / Math.max(el, 1e-9)).toFixed(2)} img/s), ${failed} failed${stopping ? '; interrupted: run the same command again to resume' : ''}\n`);
  const store = ProposalStore.open(o.out);
  try {
    if (!o.quiet) console.log(storeSummary(store));
    const unreadable = failures(store);
    const list = failuresFile(o.out);
    if (unreadable.length) {
      writeFileAtomic(list, unreadable.map(([k, why]) => `${k}\t${why.replace(/[\t\n]/g, ' ')}\n`).join(''));
      const first = unreadable.slice(0, 5).map(([k, why]) => `  ${k}: ${why}\n`).join('');
      log(`proposals: ${unreadable.length} image(s) could not be read${unreadable.length > 5 ? ' (the first 5)' : ''}:\n${first}` +
        `proposals: all ${unreadable.length} listed in ${list}\n`);
    } else {
      fs.rmSync(list, { force: true });
    }
  } finally { store.close(); }
  return { done, failed, interrupted: stopping };
}

/**
 * Converts the authors' JSON into a new store. Every number is checked before conversion
 * (readAuthorsJson); the store is written to a temporary file and renamed when complete, so a
 * failed or killed import leaves nothing behind (a killed one's leftovers go at the next start).
 */
export async function importJson(json: string, out: string, log: (m: string) => void = (m) => console.error(m)): Promise<number> {
  if (!fs.existsSync(json)) throw new Error(`--json ${json}: no such file`);
  const lock = lockStore(out, 'proposals import', (m) => log(`proposals import: ${m}`));
  try {
    if (fs.existsSync(out)) throw new Error(`--out ${out} exists; import writes a new store (remove it or choose another --out)`);
    const tmp = tempPathFor(out);
    const writer = ProposalStoreWriter.open(tmp, { format: 'soco-train proposals 1', importedFrom: path.resolve(json) });
    let n = 0;
    try {
      for await (const [key, rects] of readAuthorsJson(json)) {
        try {
          writer.append(key, { boxes: fromAuthorsRects(rects), width: 0, height: 0, rawCount: rects.length, uniqueCount: rects.length, filterStage: -1, millis: 0 });
        } catch (e) {
          throw new Error(`${json}: image ${JSON.stringify(key)}: ${(e as Error).message}`);
        }
        n++;
      }
      if (n === 0) throw new Error(`${json}: no images in it ({}): nothing to import`);
      writer.close();
    } catch (e) {
      writer.close({ index: false });
      for (const f of [tmp, `${tmp}.idx`]) fs.rmSync(f, { force: true });
      throw e;
    }
    // the index first: killed in between, a rerun (the store is not there) overwrites it
    fs.renameSync(`${tmp}.idx`, `${out}.idx`);
    fs.renameSync(tmp, out);
    return n;
  } finally {
    lock.release();
  }
}

/** `proposals verify`: every damaged record (offset, image), the index, an unfinished tail; false when damaged. */
export function verifyStore(file: string, print: (s: string) => void = console.log): boolean {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  const t0 = Date.now();
  const store = ProposalStore.open(file);
  try {
    const c = store.verify();
    print(`proposals verify: ${file}: ${c.records} good records (${store.size} images), ${c.damaged.length} damaged; ` +
      `index ${c.index === 'ok' ? 'ok' : 'failed its checksum and was rebuilt'}; ${((Date.now() - t0) / 1000).toFixed(2)} s`);
    for (const d of c.damaged) print(`  damaged: ${describeDamage(d)}`);
    const writer = lockOwner(`${file}.lock`);
    if (writer) print(`  still being written by ${describeOwner(writer)}: records appended since this check are not counted`);
    if (c.tornBytes) {
      print(`  the last ${c.tornBytes} bytes are an unfinished record: ${writer ? 'the append in progress'
        : 'a generate that was interrupted (running it again cuts them off and redoes that image)'}`);
    }
    if (c.damaged.length) {
      print(`Repair: ${repairCommand(file, store.meta)}; or read around them with --skip-damaged (export, show) or --skip-damaged-proposals (train)`);
    }
    return c.damaged.length === 0;
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------- pictures

/** Encodes an RGB image as PNG (filter 0, zlib), no dependencies. */
export function encodePng(rgb: Uint8Array, width: number, height: number): Buffer {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0;
    Buffer.from(rgb.buffer, rgb.byteOffset + y * width * 3, width * 3).copy(raw, y * (width * 3 + 1) + 1);
  }
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 6 })), chunk('IEND', Buffer.alloc(0))]);
}

const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]];

function drawRect(img: Uint8Array, W: number, H: number, b: ArrayLike<number>, c: number[], t = 2): void {
  const put = (x: number, y: number): void => {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const o = (y * W + x) * 3;
    img[o] = c[0]; img[o + 1] = c[1]; img[o + 2] = c[2];
  };
  const [x0, y0, x1, y1] = [b[0], b[1], b[2] - 1, b[3] - 1];
  for (let k = 0; k < t; k++) {
    for (let x = x0; x <= x1; x++) { put(x, y0 + k); put(x, y1 - k); }
    for (let y = y0; y <= y1; y++) { put(x0 + k, y); put(x1 - k, y); }
  }
}

/** A bar chart PNG of a histogram (no text: the bin edges and counts go to stdout). */
export function histogramPng(values: number[], bins: number, W = 640, H = 360): { png: Buffer; edges: number[]; counts: number[] } {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!values.length) { lo = 0; hi = 0; }
  const width = (hi - lo) / bins || 1;
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + i * width);
  const img = new Uint8Array(W * H * 3).fill(255);
  const m = 20, maxC = counts.reduce((a, b) => Math.max(a, b), 1), bw = (W - 2 * m) / bins;
  for (let i = 0; i < bins; i++) {
    const h = Math.round((H - 2 * m) * counts[i] / maxC);
    for (let x = Math.round(m + i * bw) + 1; x < Math.round(m + (i + 1) * bw); x++)
      for (let y = H - m - h; y < H - m; y++) { const o = (y * W + x) * 3; img[o] = 40; img[o + 1] = 90; img[o + 2] = 160; }
  }
  for (let x = m; x < W - m; x++) { const o = ((H - m) * W + x) * 3; img[o] = img[o + 1] = img[o + 2] = 0; }
  for (let y = m; y <= H - m; y++) { const o = (y * W + m) * 3; img[o] = img[o + 1] = img[o + 2] = 0; }
  return { png: encodePng(img, W, H), edges, counts };
}

export async function show(o: { store: string; images: string; n: number; outDir: string; boxes: number; seed: number; skipDamaged?: boolean }): Promise<string[]> {
  const store = openVerified(o.store, { skipDamaged: o.skipDamaged ?? false, skipFlag: '--skip-damaged', log: (m) => console.error(`proposals show: ${m}`) });
  const written: string[] = [];
  try {
    const ok: string[] = [];
    const perImage: number[] = [];
    const sizes: number[] = [];
    const SAMPLE = 1_000_000, sampler = new Rng(o.seed + 1);
    let seenBoxes = 0;
    for (const r of store.entries()) {
      if (r.status !== RecordStatus.Ok) continue;
      ok.push(r.key);
      perImage.push(r.boxes.length / 4);
      for (let i = 0; i < r.boxes.length; i += 4) {
        // reservoir sample: the histogram's shape without holding every box of ImageNet
        const v = Math.sqrt((r.boxes[i + 2] - r.boxes[i]) * (r.boxes[i + 3] - r.boxes[i + 1]));
        seenBoxes++;
        if (sizes.length < SAMPLE) sizes.push(v);
        else { const j = Math.floor(sampler.next() * seenBoxes); if (j < SAMPLE) sizes[j] = v; }
      }
    }
    fs.mkdirSync(o.outDir, { recursive: true });
    const rand = new Rng(o.seed);
    // image order first: the same seed picks the same images whatever order generate wrote them in
    const pick = ok.map((k) => [imageOrderKey(k), k]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map((e) => e[1]);
    for (let i = pick.length - 1; i > 0; i--) { const j = rand.int(i + 1); [pick[i], pick[j]] = [pick[j], pick[i]]; }
    const picked = pick.slice(0, o.n);
    const absent = picked.filter((k) => !fs.existsSync(path.join(o.images, k)));
    if (absent.length) {
      console.error(`proposals show: warning: ${absent.length} of the ${picked.length} sampled images are not under --images ${o.images} ` +
        `(e.g. ${path.join(o.images, absent[0])}): is it the folder the store was generated from? Only the histograms describe the store`);
    }
    for (const key of picked) {
      if (absent.includes(key)) continue;
      const rec = store.get(key) as ProposalRecord;
      let img;
      try { img = await decodeImage(path.join(o.images, key)); } catch (e) {
        console.error(`proposals show: skipping ${key}: ${e instanceof Error ? e.message : e}`);
        continue;
      }
      const idx = Array.from({ length: rec.boxes.length / 4 }, (_, i) => i);
      for (let i = idx.length - 1; i > 0; i--) { const j = rand.int(i + 1); [idx[i], idx[j]] = [idx[j], idx[i]]; }
      const data = new Uint8Array(img.data);
      idx.slice(0, o.boxes).forEach((bi, k) => drawRect(data, img.width, img.height, rec.boxes.subarray(bi * 4, bi * 4 + 4), PALETTE[k % PALETTE.length]));
      const f = path.join(o.outDir, `${key.replace(/[\\/]/g, '__')}.png`);
      fs.writeFileSync(f, encodePng(data, img.width, img.height));
      written.push(f);
    }
    for (const [name, values, bins] of [['proposals_per_image', perImage, 30], ['sqrt_wh', sizes, 40]] as const) {
      const h = histogramPng([...values], bins);
      const f = path.join(o.outDir, `hist_${name}.png`);
      fs.writeFileSync(f, h.png);
      written.push(f);
      console.log(`${name}: ${h.counts.map((c, i) => `[${h.edges[i].toFixed(0)},${h.edges[i + 1].toFixed(0)}):${c}`).join(' ')}`);
    }
    console.log(`proposals show: wrote ${written.length} PNGs to ${o.outDir}`);
    console.log(storeSummary(store));
  } finally {
    store.close();
  }
  return written;
}

export function registerProposalsCommands(program: Command): void {
  const cmd = program.command('proposals').description('selective-search proposals: generate, convert, inspect');
  cmd.command('generate')
    .description('run selective search on every image under --images into a proposal store (resumable)')
    .requiredOption('--images <dir>', 'image root (ImageNet train/<wnid>/*.JPEG or any tree)')
    .requiredOption('--out <store>', 'proposal store to create or resume')
    .option('--workers <n>', 'images processed in parallel (native threads)', positiveInt('--workers'), 1)
    .addOption(new Option('--preset <name>', 'parameter preset').choices(['paper', 'official']).default('paper'))
    .option('--scale <k>', 'felzenszwalb scale (overrides the preset)', positiveNum('--scale'))
    .option('--sigma <s>', 'gaussian sigma (overrides the preset)', (v: string) => { const n = Number(v); if (!(n >= 0)) throw new InvalidArgumentError('--sigma must be >= 0'); return n; })
    .option('--min-size <px>', 'felzenszwalb min_size (overrides the preset)', nonNegInt('--min-size'))
    .option('--max-side <px>', 'downscale images whose longer side exceeds this (0 = never)', nonNegInt('--max-side'), 0)
    .option('--no-filter', 'keep every unique raw box (no ratio3size0308 filter)')
    .action(async (opts: GenerateOpts) => {
      checkOutputPath(opts.out, { flag: '--out', kind: 'file' });
      // the libuv pool runs the search (sized before its first use), the decode threads the decoding
      if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(Math.max(4, opts.workers));
      setDecodeThreads(Math.max(4, opts.workers));
      const r = await generate(opts);
      if (r.interrupted) process.exitCode = 130;
    });
  cmd.command('export')
    .description("write the authors' JSON ({path: [[x, y, w, h], ...]})")
    .requiredOption('--store <store>', 'proposal store')
    .requiredOption('--json <out>', 'output JSON file')
    .option('--basename', 'key by file name instead of the relative path (the authors\' keys)')
    .option('--skip-damaged', 'leave damaged records out (counted) instead of refusing the store')
    .action(async (opts: { store: string; json: string; basename?: boolean; skipDamaged?: boolean }) => {
      checkOutputPath(opts.json, { flag: '--json', kind: 'file' });
      const store = openVerified(opts.store, { skipDamaged: opts.skipDamaged ?? false, skipFlag: '--skip-damaged', log: (m) => console.error(`proposals export: ${m}`) });
      try {
        const n = await writeAuthorsJson(store, opts.json, { basename: opts.basename });
        console.log(`proposals export: ${n} images to ${opts.json}`);
        console.log(storeSummary(store));
      } finally { store.close(); }
    });
  cmd.command('verify')
    .description('check every record of a store (checksums) and its index; lists each damaged record (offset, image); exit 1 when damaged')
    .argument('<store>', 'proposal store')
    .action((store: string) => {
      if (!verifyStore(store)) process.exitCode = 1;
    });
  cmd.command('import')
    .description("convert the authors' JSON into a proposal store")
    .requiredOption('--json <in>', "the authors' JSON")
    .requiredOption('--out <store>', 'new proposal store')
    .action(async (opts: { json: string; out: string }) => {
      checkOutputPath(opts.out, { flag: '--out', kind: 'file' });
      const n = await importJson(opts.json, opts.out);
      console.log(`proposals import: ${n} images from ${opts.json}`);
      const store = ProposalStore.open(opts.out);
      try { console.log(storeSummary(store)); } finally { store.close(); }
    });
  cmd.command('show')
    .description('PNGs of N images with a random sample of their boxes, and histograms of boxes per image and sqrt(wh)')
    .requiredOption('--store <store>', 'proposal store')
    .requiredOption('--images <dir>', 'image root the store was generated from')
    .option('--n <n>', 'number of images', positiveInt('--n'), 8)
    .requiredOption('--out-dir <dir>', 'where the PNGs go')
    .option('--boxes <k>', 'boxes drawn per image', positiveInt('--boxes'), 8)
    .option('--seed <s>', 'random seed', nonNegInt('--seed'), 0)
    .option('--skip-damaged', 'leave damaged records out (counted) instead of refusing the store')
    .action(async (opts: { store: string; images: string; n: number; outDir: string; boxes: number; seed: number; skipDamaged?: boolean }) => {
      checkOutputPath(opts.outDir, { flag: '--out-dir', kind: 'dir' });
      await show(opts);
    });
}
