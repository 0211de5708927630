// `soco-train views --images DIR --proposals FILE --out DIR [--n 16]`: contact sheets of what the
// loader feeds the model (the paper's Figure 1, for real data): per image one row with every view
// after augmentation (de-normalised for display), each sampled proposal drawn in every view,
// numbered by its proposal index and coloured by the FPN level it is pooled from. A column per box
// set: the authors' pipeline draws V1's boxes once per pair, so V1 shows once per pair (V1-V2, V1-V3).
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { deviceOption, positiveInt } from './options';
import { Tensor, pickDevice, tensor, tidy } from '../torch';
import { checkOutputPath } from '../io/output_path';
import { listImageFiles } from '../data/image_files';
import { openProposals } from '../train/data_source';
import { Batch, SoCoLoader, disposeBatch } from '../data/loader';
import { ViewAugmentation } from '../data/augment';
import { PAPER_GEOMETRY, officialGeometry } from '../data/views_geometry';
import { encodePng } from './proposals';

/** P2, P3, P4, P5. */
export const LEVEL_COLOURS: [number, number, number][] = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 165, 30]];
const FALLBACK_COLOUR: [number, number, number] = [255, 255, 255];

// 3x5 glyphs, one row per string, '#' = ink: enough for box numbers and the legend.
const GLYPHS: Record<string, string[]> = {
  0: ['###', '#.#', '#.#', '#.#', '###'], 1: ['.#.', '##.', '.#.', '.#.', '###'], 2: ['###', '..#', '###', '#..', '###'],
  3: ['###', '..#', '###', '..#', '###'], 4: ['#.#', '#.#', '###', '..#', '..#'], 5: ['###', '#..', '###', '..#', '###'],
  6: ['###', '#..', '###', '#.#', '###'], 7: ['###', '..#', '..#', '..#', '..#'], 8: ['###', '#.#', '###', '#.#', '###'],
  9: ['###', '#.#', '###', '..#', '###'], '-': ['...', '...', '###', '...', '...'], P: ['###', '#.#', '###', '#..', '#..'],
  V: ['#.#', '#.#', '#.#', '#.#', '.#.'], ' ': ['...', '...', '...', '...', '...'],
};

/** An RGB canvas (row-major, 3 bytes a pixel). */
export class Canvas {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, fill = 255) {
    this.data = new Uint8Array(width * height * 3).fill(fill);
  }
  put(x: number, y: number, c: readonly number[]): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const o = (y * this.width + x) * 3;
    this.data[o] = c[0]; this.data[o + 1] = c[1]; this.data[o + 2] = c[2];
  }
  fillRect(x0: number, y0: number, w: number, h: number, c: readonly number[]): void {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) this.put(x, y, c);
  }
  /** Copies an RGB image (HWC bytes) with its top-left at (x0, y0). */
  blit(rgb: Uint8Array, w: number, h: number, x0: number, y0: number): void {
    for (let y = 0; y < h; y++) {
      const dy = y0 + y;
      if (dy < 0 || dy >= this.height) continue;
      const from = Math.max(0, -x0);
      const to = Math.min(w, this.width - x0);
      if (to > from) this.data.set(rgb.subarray((y * w + from) * 3, (y * w + to) * 3), (dy * this.width + x0 + from) * 3);
    }
  }
  /** Outline of the pixels covered by [x1, y1, x2, y2) (continuous extents), clipped to `clip`. */
  rect(b: readonly number[], c: readonly number[], thick: number, clip: [number, number, number, number]): void {
    const [cx, cy, cw, ch] = clip;
    const x0 = Math.max(cx, Math.round(b[0])), y0 = Math.max(cy, Math.round(b[1]));
    const x1 = Math.min(cx + cw, Math.round(b[2])) - 1, y1 = Math.min(cy + ch, Math.round(b[3])) - 1;
    if (x1 < x0 || y1 < y0) return;
    for (let k = 0; k < thick; k++) {
      for (let x = x0; x <= x1; x++) { this.put(x, y0 + k, c); this.put(x, y1 - k, c); }
      for (let y = y0; y <= y1; y++) { this.put(x0 + k, y, c); this.put(x1 - k, y, c); }
    }
  }
  /** Text in the 3x5 font at `scale`, on a filled background. */
  text(s: string, x0: number, y0: number, c: readonly number[], bg: readonly number[] | null, scale = 2): void {
    const w = s.length * 4 * scale + scale;
    if (bg) this.fillRect(x0, y0, w, 7 * scale, bg);
    [...s].forEach((ch, i) => {
      const g = GLYPHS[ch] ?? GLYPHS[' '];
      for (let gy = 0; gy < 5; gy++) for (let gx = 0; gx < 3; gx++)
        if (g[gy][gx] === '#') this.fillRect(x0 + scale + (i * 4 + gx) * scale, y0 + scale + gy * scale, scale, scale, c);
    });
  }
}

/** A normalised view batch [B, 3, h, w] back to displayable uint8 HWC images. */
function toDisplay(x: Tensor, aug: ViewAugmentation): Uint8Array {
  return tidy(() => {
    let y = x.to('cpu');
    if (aug.normalize) {
      const std = tensor(Float32Array.from(aug.normalize.std), { shape: [1, 3, 1, 1] });
      const mean = tensor(Float32Array.from(aug.normalize.mean), { shape: [1, 3, 1, 1] });
      y = y.mul(std).add(mean);
    }
    return y.clamp(0, 1).mul(255).round().to(null, 'uint8').permute(0, 2, 3, 1).contiguous().toTypedArray() as Uint8Array;
  });
}

const GAP = 8;
const HEADER = 22;

/** One sheet for a batch: a row per image, a column per box set (paper: per view). */
export function contactSheet(b: Batch, augmentations: readonly ViewAugmentation[]): { png: Buffer; width: number; height: number } {
  const n = b.views[0].size(0);
  const sizes = b.sets.map((s) => [b.views[s.view].size(3), b.views[s.view].size(2)]);
  const width = GAP + sizes.reduce((a, [w]) => a + w + GAP, 0);
  const rowH = Math.max(...sizes.map(([, h]) => h));
  const height = HEADER + GAP + n * (rowH + GAP);
  const c = new Canvas(width, height, 255);
  // Legend: view names over the columns (a view with several sets: with its pair's), the level
  // colours after the first.
  const label = (s: number): string => {
    const view = b.sets[s].view;
    if (b.sets.filter((t) => t.view === view).length < 2) return `V${view + 1}`;
    return [view, ...b.pairs.filter((p) => p.a === s).map((p) => b.sets[p.b].view)].map((v) => `V${v + 1}`).join('-');
  };
  let x = GAP;
  sizes.forEach(([w], s) => { c.text(label(s), x, 4, [0, 0, 0], null); x += w + GAP; });
  const legend = GAP + label(0).length * 8 + 10;
  LEVEL_COLOURS.forEach((col, l) => c.text(`P${l + 2}`, legend + l * 36, 4, [255, 255, 255], col));
  const k = b.ids.size(1);
  const ids = b.sets.map((s) => s.ids.toArray());
  const boxes = b.sets.map((s) => s.boxes.toArray());
  const levels = b.sets.map((s) => s.levels.toArray());
  const pixels = b.views.map((v, i) => toDisplay(v, augmentations[i]));
  for (let i = 0; i < n; i++) {
    const y0 = HEADER + GAP + i * (rowH + GAP);
    let x0 = GAP;
    b.sets.forEach(({ view }, s) => {
      const [w, h] = sizes[s];
      c.blit(pixels[view].subarray(i * w * h * 3, (i + 1) * w * h * 3), w, h, x0, y0);
      const drawn = new Set<string>();
      for (let j = 0; j < k; j++) {
        const bx = boxes[s].slice((i * k + j) * 4, (i * k + j + 1) * 4);
        const key = bx.map((q) => q.toFixed(1)).join(',');
        if (drawn.has(key)) continue;  // padded duplicates (K > proposals in common)
        drawn.add(key);
        const id = ids[s][i * k + j];
        const level = levels[s][i * k + j];
        const col = id < 0 || level < 0 ? FALLBACK_COLOUR : LEVEL_COLOURS[level];
        const shifted = [bx[0] + x0, bx[1] + y0, bx[2] + x0, bx[3] + y0];
        c.rect(shifted, col, 2, [x0, y0, w, h]);
        c.text(String(id), Math.max(x0, Math.round(shifted[0])), Math.max(y0, Math.round(shifted[1])), [0, 0, 0], col);
      }
      x0 += w + GAP;
    });
  }
  return { png: encodePng(c.data, width, height), width, height };
}

export interface ViewsOptions {
  images: string;
  proposals: string;
  out: string;
  n: number;
  seed: number;
  epoch: number;
  layout: 'paper' | 'official';
  device: string;
  perSheet: number;
}

/** Writes the sheets; returns their paths. */
export async function writeViewSheets(o: ViewsOptions): Promise<string[]> {
  checkOutputPath(o.out, { flag: '--out', kind: 'dir' });
  const device = pickDevice(o.device);
  if (!fs.existsSync(o.images) || !fs.statSync(o.images).isDirectory()) throw new Error(`--images ${o.images}: not a directory`);
  if (!fs.existsSync(o.proposals)) throw new Error(`--proposals ${o.proposals}: no such file`);
  const files = listImageFiles(o.images);
  if (!files.length) throw new Error(`--images ${o.images}: no JPEG, PNG or WebP files found`);
  const { store, lookup } = openProposals(o.proposals, o.images, files);
  const written: string[] = [];
  try {
    const geometry = o.layout === 'official' ? officialGeometry('fpn') : PAPER_GEOMETRY;
    const n = Math.min(o.n, files.length);
    const loader = new SoCoLoader({
      root: o.images, files, proposals: lookup, batchSize: Math.min(n, o.perSheet), seed: o.seed, dropLast: false,
      device, geometry, prefetch: 1, maxBadFraction: 0.5,
    });
    fs.mkdirSync(o.out, { recursive: true });
    let shown = 0;
    for await (const b of loader.epoch(o.epoch)) {
      try {
        const sheet = contactSheet(b, loader.options.augmentations);
        const file = path.join(o.out, `views-${String(b.index + 1).padStart(3, '0')}.png`);
        fs.writeFileSync(file, sheet.png);
        written.push(file);
        console.log(`views: ${file} (${sheet.width}x${sheet.height}): ${b.keys.join(', ')}`);
        shown += b.keys.length;
      } finally {
        disposeBatch(b);
      }
      if (shown >= n) break;
    }
    const s = loader.stats;
    console.log(`views: ${shown} images; boxes numbered by proposal index (-1 = fallback), coloured by FPN level ` +
      `(P2 red, P3 green, P4 blue, P5 orange; white = fallback or no level); ${s.missingProposals} without proposals, ` +
      `${s.fallbacks} with no proposal common to all views, ${s.unreadable.size} unreadable`);
  } finally {
    store.close();
  }
  return written;
}


export function registerViewsCommand(program: Command): void {
  program.command('views')
    .description('contact sheets of V1/V2/V3 after augmentation, with the sampled proposals drawn (numbered, coloured by FPN level)')
    .requiredOption('--images <dir>', 'image root')
    .requiredOption('--proposals <store>', 'proposal store for those images (soco-train proposals generate)')
    .requiredOption('--out <dir>', 'where the PNG sheets go')
    .option('--n <n>', 'number of images', positiveInt('--n'), 16)
    .option('--per-sheet <n>', 'images per sheet', positiveInt('--per-sheet'), 8)
    .option('--seed <s>', 'random seed', (v: string) => { const n = Number(v); if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('--seed must be a non-negative integer'); return n; }, 0)
    .option('--epoch <e>', 'epoch whose order and views are shown', (v: string) => { const n = Number(v); if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('--epoch must be a non-negative integer'); return n; }, 0)
    .addOption(new Option('--layout <name>', "views and boxes: the paper's or the authors' code's (their box pipeline)").choices(['paper', 'official']).default('paper'))
    .option('--device <d>', 'where the augmentations run (auto, cpu, cuda, cuda:N)', deviceOption('--device'), 'cpu')
    .action(async (opts: ViewsOptions) => {
      await writeViewSheets(opts);
    });
}
