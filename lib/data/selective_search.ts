// Selective search proposals (native/proposals.h): the SoCo authors' algorithm (skimage
// felzenszwalb + AlpacaDB grouping with their fixes), run on the libuv thread pool.
import { native } from '../torch/native';

export interface SelectiveSearchParams {
  /** Felzenszwalb k on 0..255 intensities (skimage's `scale`). */
  scale: number;
  /** Gaussian pre-smoothing sigma (pixels). */
  sigma: number;
  /** Felzenszwalb post-merge minimum component size (pixels). */
  minSize: number;
  /** Neighbours by touching pixels instead of the authors' box-corner rule. */
  pixelAdjacency?: boolean;
  /** Colour histograms over the true H, S ranges. Default false = the authors' code, where H
   * and S (in [0, 1]) are binned over 0..255 and so only V discriminates. */
  fullHsv?: boolean;
  /** ratio3size0308 with its fallbacks (default true); false keeps every unique box. */
  filter?: boolean;
  /** Order equal edge costs exactly as numpy's argsort does (slower; default false: by index). */
  numpyTieOrder?: boolean;
  /** Downscale so that the longer side is at most this many pixels (0 = never). Boxes come back
   * in original-image pixels. */
  maxSide?: number;
}

/** Paper defaults ("scale=500, sigma=0.9, min_size=10"). */
export const PAPER_PRESET: Readonly<SelectiveSearchParams> = Object.freeze({ scale: 500, sigma: 0.9, minSize: 10 });
/** The authors' released proposals (scale=300, sigma=0.9, min_size=100). */
export const OFFICIAL_PRESET: Readonly<SelectiveSearchParams> = Object.freeze({ scale: 300, sigma: 0.9, minSize: 100 });
export type PresetName = 'paper' | 'official';
export const PRESETS: Readonly<Record<PresetName, Readonly<SelectiveSearchParams>>> = Object.freeze({
  paper: PAPER_PRESET,
  official: OFFICIAL_PRESET,
});

/** Which rule produced the kept boxes. */
export enum FilterStage {
  Off = -1,
  /** w,h >= 32, 1/3 <= w/h <= 3, 0.3 <= sqrt(wh)/sqrt(WH) <= 0.8 */
  RatioSize = 0,
  /** fallback: w,h >= 32 and 1/3 <= w/h <= 3 */
  Ratio = 1,
  /** fallback: w,h >= 32 */
  MinSide = 2,
  /** nothing survived any rule */
  Empty = 3,
}

export interface SelectiveSearchResult {
  /** Unique boxes, 4 int32 per box: x0, y0, x1, y1 with x1/y1 exclusive (exact pixel extents,
   * x1 - x0 = the authors' w + 1), in the authors' region order. */
  boxes: Int32Array;
  /** Regions = boxes the authors' code emits (duplicates included). */
  rawCount: number;
  /** Unique raw boxes. */
  uniqueCount: number;
  filterStage: FilterStage;
  /** Felzenszwalb segments. */
  segments: number;
  /** Size the algorithm ran at (after maxSide). */
  width: number;
  height: number;
  /** Felzenszwalb labels (row-major, width*height) when asked for. */
  labels?: Int32Array;
}

/** Runs selective search on an RGB HWC image off the event loop. */
export function selectiveSearch(rgb: Uint8Array, width: number, height: number,
  params: SelectiveSearchParams = PAPER_PRESET, opts: { labels?: boolean } = {}): Promise<SelectiveSearchResult> {
  return native.selectiveSearch(rgb, width, height, params, opts.labels ?? false) as Promise<SelectiveSearchResult>;
}

/** skimage.segmentation.felzenszwalb(img_as_float(rgb), scale, sigma, min_size) labels. */
export function felzenszwalb(rgb: Uint8Array, width: number, height: number,
  params: Pick<SelectiveSearchParams, 'scale' | 'sigma' | 'minSize' | 'numpyTieOrder'>): Promise<{ labels: Int32Array; segments: number }> {
  return native.felzenszwalb(rgb, width, height, params) as Promise<{ labels: Int32Array; segments: number }>;
}

/** Authors' JSON convention [x, y, w, h] with w = max_x - min_x (one pixel short). */
export function toAuthorsRects(boxes: Int32Array): number[][] {
  const out: number[][] = [];
  for (let i = 0; i + 3 < boxes.length; i += 4)
    out.push([boxes[i], boxes[i + 1], boxes[i + 2] - boxes[i] - 1, boxes[i + 3] - boxes[i + 1] - 1]);
  return out;
}

/** Inverse of toAuthorsRects; duplicates removed (first occurrence kept). */
export function fromAuthorsRects(rects: ReadonlyArray<ReadonlyArray<number>>): Int32Array {
  const seen = new Set<string>();
  const out: number[] = [];
  for (const r of rects) {
    if (r.length !== 4 || !r.every((v) => Number.isInteger(v))) throw new Error(`invalid rect ${JSON.stringify(r)}: expected [x, y, w, h] integers`);
    const [x, y, w, h] = r;
    if (w < 0 || h < 0) throw new Error(`invalid rect ${JSON.stringify(r)}: negative size`);
    const b = [x, y, x + w + 1, y + h + 1];
    const k = b.join(',');
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(...b);
  }
  return Int32Array.from(out);
}
