// Per-image view geometry for SoCo (RECIPE.md "Views"): which crop each view takes, whether it is
// flipped, where the K sampled proposals land in it, and each box's FPN level. Pure and seeded;
// the pixels are produced later (batched on the device) from the crops recorded here.
//
// Coordinates: continuous pixel extents, a pixel i covers [i, i+1). Boxes are [x1, y1, x2, y2].
// A view maps source-image coordinates to its own by x' = sx*x + tx, y' = sy*y + ty (sx < 0 when
// flipped): resizing and cropping are exactly affine in this convention (half-pixel centres, as
// PIL, torchvision and roi_align(aligned=True) use), so boxes follow the pixels.
//
// boxPipeline 'official' instead reproduces the authors' data code (RECIPE.md "The authors' box
// pipeline", sampleOfficialViews below): inclusive pixel indices, a proposal draw per view pair,
// per-view padding, levels from integer boxes; the loss then pairs slots by proposal id.

export type Box = [number, number, number, number];

/** Small seeded PRNG (mulberry32): deterministic per seed, fast, good enough for augmentation. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(a: number, b: number): number {
    return a + (b - a) * this.next();
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bool(p: number): boolean {
    return this.next() < p;
  }
}

/** Mixes integers (seed, epoch, image index, ...) into one 32-bit seed (murmur3 finaliser), so
 * an image's views do not depend on the order in which images are processed. */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    let k = Math.imul(p >>> 0, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h ^= k;
    h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Python's round(): half to even (torchvision's crop sizes use it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface Crop { x: number; y: number; w: number; h: number }

/** torchvision RandomResizedCrop.get_params (0.14): integer crop of a width x height image. */
export function randomResizedCrop(rng: Rng, width: number, height: number, scale: [number, number],
  ratio: [number, number]): Crop {
  const area = width * height;
  const logR: [number, number] = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logR[0], logR[1]));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const y = rng.int(height - h + 1);
      const x = rng.int(width - w + 1);
      return { x, y, w, h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

export interface GeometryOptions {
  /** 'fpn': V1, V2, V3 (+V4 with soco_star); 'c4': V1 and V2 only, no jitter. */
  arch: 'fpn' | 'c4';
  /** SoCo*: adds a fourth view. */
  socoStar: boolean;
  /** Proposals per image. */
  k: number;
  /** V2 (and other random crops): area scale and aspect range. Paper [0.5, 1]; C4 official [0.6, 1]. */
  cropScale: [number, number];
  cropRatio: [number, number];
  /** Authors: random crops are taken from the raw image; paper: from V1. */
  cropFromRaw: boolean;
  /** View layout. paper: V3 = V2 at 112, V4 = new crop of V1 at 192. official: V3 = new crop at
   * 112 (SoCo*: at 192) and SoCo*'s V4 = V2 at 112. (112 is v3Size, 192 is v4Size.) */
  layout: 'paper' | 'official';
  /** Authors: proposals intersecting a crop are kept and clipped; paper: only those inside it. */
  keepClipped: boolean;
  jitter: boolean;
  jitterProb: number;
  jitterRange: number;
  flipProb: number;
  v1Size: number;
  /** V2's size (paper 224). */
  v2Size: number;
  /** The small view's size (Table 5(a), paper 112): the paper's V3 (V2 downsampled), the authors'
   * V3 (its own crop) and, in the authors' SoCo* layout, their V4 (V2 downsampled). */
  v3Size: number;
  /** SoCo*'s extra crop view (paper 192): the paper's V4, the authors' SoCo* V3. */
  v4Size: number;
  /** Table 4 "multi view": false drops the small view (and arch fpn trains on V1 and V2 only). */
  multiView: boolean;
  /** FPN level thresholds on sqrt(w*h) in the view's pixels: P2 <= t0 < P3 <= t1 < P4 <= t2 < P5. */
  levelThresholds: [number, number, number];
  /** 'paper': continuous boxes, K proposals common to all views, rows paired across views.
   * 'official': the authors' box pipeline (sampleOfficialViews); needs cropFromRaw and keepClipped. */
  boxPipeline: 'paper' | 'official';
}

export const PAPER_GEOMETRY: GeometryOptions = {
  arch: 'fpn', socoStar: false, k: 4, cropScale: [0.5, 1], cropRatio: [3 / 4, 4 / 3], cropFromRaw: false,
  layout: 'paper', keepClipped: false, jitter: true, jitterProb: 0.5, jitterRange: 0.1, flipProb: 0.5,
  v1Size: 224, v2Size: 224, v3Size: 112, v4Size: 192, multiView: true, levelThresholds: [48, 96, 192], boxPipeline: 'paper',
};

/** The authors' code (preset `official`). */
export function officialGeometry(arch: 'fpn' | 'c4' = 'fpn', socoStar = false): GeometryOptions {
  return {
    ...PAPER_GEOMETRY, arch, socoStar, cropFromRaw: true, layout: 'official', keepClipped: true, boxPipeline: 'official',
    cropScale: arch === 'c4' ? [0.6, 1] : [0.5, 1], jitter: arch === 'fpn', multiView: arch === 'fpn',
  };
}

export interface ViewGeometry {
  name: 'v1' | 'v2' | 'v3' | 'v4';
  width: number;
  height: number;
  /** Pixels: resize the source to V1 (base 'v1') or not (base 'source'), take the integer crop
   * of that base image, resize it to width x height, then mirror if flip. */
  base: 'source' | 'v1';
  crop: Crop;
  flip: boolean;
  /** Source-image coordinates -> view coordinates: x' = sx*x + tx, y' = sy*y + ty. */
  sx: number; tx: number; sy: number; ty: number;
  /** K boxes in view pixels, in the order of ImageViews.ids: the view's first box set's. */
  boxes: Box[];
  /** FPN level per box: 0..3 = P2..P5 (the first box set's). */
  levels: number[];
}

/** K boxes that lie in one view, with their levels and proposal ids. */
export interface BoxSet {
  /** The view (index into ImageViews.views) the boxes lie in. */
  view: number;
  /** K boxes in the view's pixels, flip applied. */
  boxes: Box[];
  /** FPN level per box: 0..3 = P2..P5; -1 = none (official, arch fpn: an integer size above
   * OFFICIAL_MAX_SIZE; such a box enters no loss pair). */
  levels: number[];
  /** Proposal index per box (repeats when padded); paper: -1 = fallback box. */
  ids: number[];
  /** Official only: the boxes where the authors' code scales them to the view: inclusive pixel
   * indices relative to the view's crop, after clipping and padding, before the flip. */
  inclusive?: Box[];
}

export interface ImageViews {
  /** Proposal index per sampled box (repeats when padded); -1 = fallback box (the whole image
   * when there are no proposals, else the common part of the crops). Official: the first box set's. */
  ids: number[];
  /** True when no proposal was usable and the fallback box stands in (counted by the loader). */
  fallback: boolean;
  views: ViewGeometry[];
  /** Every box set. Paper: one per view (set v lies in view v, ids shared); official: V1 holds
   * one set per view pair whose crop it was drawn for, the other views one each. */
  sets: BoxSet[];
  /** The loss pairs [a, b] of box sets (a on V1), in view order: V1-V2, V1-V3, V1-V4. Paper:
   * slot i of a pairs with slot i of b; official: every two slots with the same proposal id. */
  pairs: [number, number][];
}

export function fpnLevel(box: Box, t: [number, number, number]): number {
  const s = Math.sqrt(Math.max(0, box[2] - box[0]) * Math.max(0, box[3] - box[1]));
  return s <= t[0] ? 0 : s <= t[1] ? 1 : s <= t[2] ? 2 : 3;
}

export function applyTransform(v: Pick<ViewGeometry, 'sx' | 'tx' | 'sy' | 'ty'>, b: Box): Box {
  const xa = v.sx * b[0] + v.tx;
  const xb = v.sx * b[2] + v.tx;
  const ya = v.sy * b[1] + v.ty;
  const yb = v.sy * b[3] + v.ty;
  return [Math.min(xa, xb), Math.min(ya, yb), Math.max(xa, xb), Math.max(ya, yb)];
}

interface Spec { name: ViewGeometry['name']; size: number; crop: 'full' | 'shared' | 'own' }

function viewSpecs(o: GeometryOptions): Spec[] {
  const v1: Spec = { name: 'v1', size: o.v1Size, crop: 'full' };
  const v2: Spec = { name: 'v2', size: o.v2Size, crop: 'shared' };
  if (o.arch === 'c4') return [v1, v2];
  if (!o.multiView) {
    if (o.socoStar) throw new RangeError('SoCo* (socoStar) adds a view to V1, V2 and V3: it needs multiView');
    return [v1, v2];
  }
  if (o.layout === 'paper') {
    const specs: Spec[] = [v1, v2, { name: 'v3', size: o.v3Size, crop: 'shared' }];
    if (o.socoStar) specs.push({ name: 'v4', size: o.v4Size, crop: 'own' });
    return specs;
  }
  if (o.socoStar) return [v1, v2, { name: 'v3', size: o.v4Size, crop: 'own' }, { name: 'v4', size: o.v3Size, crop: 'shared' }];
  return [v1, v2, { name: 'v3', size: o.v3Size, crop: 'own' }];
}

/** The views sampleViews draws for these options, in order, with their (square) sizes. */
export function viewLayout(o: GeometryOptions): { name: ViewGeometry['name']; size: number }[] {
  return viewSpecs(o).map(({ name, size }) => ({ name, size }));
}

/** Crop of the base image -> affine from source coordinates. */
function affine(base: 'source' | 'v1', crop: Crop, size: number, flip: boolean, W: number, H: number, v1: number) {
  // Base pixels per source pixel.
  const bx = base === 'v1' ? v1 / W : 1;
  const by = base === 'v1' ? v1 / H : 1;
  let sx = (bx * size) / crop.w;
  let tx = (-crop.x * size) / crop.w;
  const sy = (by * size) / crop.h;
  const ty = (-crop.y * size) / crop.h;
  if (flip) {
    sx = -sx;
    tx = size - tx;
  }
  return { sx, tx, sy, ty };
}

function inside(b: Box, r: Box): boolean {
  const eps = 1e-6;
  return b[0] >= r[0] - eps && b[1] >= r[1] - eps && b[2] <= r[2] + eps && b[3] <= r[3] + eps;
}

function intersect(b: Box, r: Box): Box | null {
  const x1 = Math.max(b[0], r[0]);
  const y1 = Math.max(b[1], r[1]);
  const x2 = Math.min(b[2], r[2]);
  const y2 = Math.min(b[3], r[3]);
  return x2 > x1 && y2 > y1 ? [x1, y1, x2, y2] : null;
}

/**
 * Samples the views of one image of size width x height with proposals (source pixels, exact
 * extents as the proposal store holds them). An image with no proposals uses the whole image as
 * its one proposal (RECIPE); when no proposal survives the crops, the intersection of the crops
 * stands in (ids = -1, fallback). boxPipeline 'official': sampleOfficialViews.
 */
export function sampleViews(rng: Rng, width: number, height: number, proposals: readonly Box[],
  o: GeometryOptions = PAPER_GEOMETRY): ImageViews {
  if (!(width > 0 && height > 0)) throw new RangeError(`image size ${width}x${height}`);
  if (!(Number.isInteger(o.k) && o.k >= 1)) throw new RangeError(`k must be a positive integer, got ${o.k}`);
  for (const key of ['v1Size', 'v2Size', 'v3Size', 'v4Size'] as const)
    if (!(Number.isInteger(o[key]) && o[key] >= 1)) throw new RangeError(`${key} must be a positive integer, got ${o[key]}`);
  if (o.boxPipeline === 'official') return sampleOfficialViews(rng, width, height, proposals, o);
  const props: readonly Box[] = proposals.length ? proposals : [[0, 0, width, height]];
  const base = o.cropFromRaw ? 'source' : 'v1';
  const baseW = base === 'v1' ? o.v1Size : width;
  const baseH = base === 'v1' ? o.v1Size : height;
  const shared = randomResizedCrop(rng, baseW, baseH, o.cropScale, o.cropRatio);

  const raw: { spec: Spec; base: 'source' | 'v1'; crop: Crop; flip: boolean; region: Box }[] = [];
  for (const spec of viewSpecs(o)) {
    const vb = spec.crop === 'full' ? 'source' : base;
    const crop = spec.crop === 'full' ? { x: 0, y: 0, w: width, h: height }
      : spec.crop === 'shared' ? shared : randomResizedCrop(rng, baseW, baseH, o.cropScale, o.cropRatio);
    const flip = rng.bool(o.flipProb);
    const kx = vb === 'v1' ? width / o.v1Size : 1;
    const ky = vb === 'v1' ? height / o.v1Size : 1;
    const region: Box = [crop.x * kx, crop.y * ky, (crop.x + crop.w) * kx, (crop.y + crop.h) * ky];
    raw.push({ spec, base: vb, crop, flip, region });
  }

  // Proposals present in every view (a view keeps a box inside it, or a clipped one).
  const common: number[] = [];
  for (let i = 0; i < props.length; i++) {
    if (raw.every((v) => (o.keepClipped ? intersect(props[i], v.region) !== null : inside(props[i], v.region))))
      common.push(i);
  }
  let ids: number[];
  let source: Box[];
  const fallback = proposals.length === 0 || common.length === 0;
  if (fallback) {
    // No proposals: the whole image (each view then sees its whole frame, after clipping).
    let r: Box | null = [0, 0, width, height];
    if (proposals.length) for (const v of raw) r = r && intersect(r, v.region);
    const box = r ?? [0, 0, width, height];
    ids = new Array<number>(o.k).fill(-1);
    source = ids.map(() => box);
  } else {
    // K without replacement (partial Fisher-Yates), then pad with replacement.
    const pool = common.slice();
    ids = [];
    for (let i = 0; i < Math.min(o.k, pool.length); i++) {
      const j = i + rng.int(pool.length - i);
      [pool[i], pool[j]] = [pool[j], pool[i]];
      ids.push(pool[i]);
    }
    while (ids.length < o.k) ids.push(common[rng.int(common.length)]);
    source = ids.map((i) => props[i]);
  }

  const views: ViewGeometry[] = raw.map((v) => {
    const a = affine(v.base, v.crop, v.spec.size, v.flip, width, height, o.v1Size);
    const boxes = source.map((b) => {
      const clipped = intersect(b, v.region) ?? b;
      return applyTransform(a, clipped);
    });
    return { name: v.spec.name, width: v.spec.size, height: v.spec.size, base: v.base, crop: v.crop, flip: v.flip,
      ...a, boxes, levels: [] };
  });

  if (o.jitter) {  // V1 only, in V1 pixels, each box with probability jitterProb
    const v1 = views[0];
    v1.boxes = v1.boxes.map((b) => {
      if (!rng.bool(o.jitterProb)) return b;
      const r = () => rng.uniform(-o.jitterRange, o.jitterRange);
      let x = b[0];
      let y = b[1];
      let w = b[2] - b[0];
      let h = b[3] - b[1];
      const [rx, ry, rw, rh] = [r(), r(), r(), r()];
      x += rx * w; y += ry * h; w += rw * w; h += rh * h;
      const s = v1.width;
      const out: Box = [Math.max(0, x), Math.max(0, y), Math.min(s, x + w), Math.min(v1.height, y + h)];
      return out[2] > out[0] && out[3] > out[1] ? out : b;
    });
  }
  for (const v of views) v.levels = v.boxes.map((b) => fpnLevel(b, o.levelThresholds));
  const sets = views.map((v, i): BoxSet => ({ view: i, boxes: v.boxes, levels: v.levels, ids }));
  return { ids, fallback, views, sets, pairs: views.slice(1).map((_, i): [number, number] => [0, i + 1]) };
}

// ---------------------------------------------------------------- the authors' box pipeline

/** The authors' P5 limit (aware_range[3]): a box whose integer size exceeds it gets no level. */
export const OFFICIAL_MAX_SIZE = 224;
/** Draws of crops and proposals before the last one is taken as it is (the authors' max_tries). */
export const OFFICIAL_TRIES = 5;

/** A store box (exact extents [x0, y0, x1, y1)) as the authors' code loads it: their rect
 * [x, y, w, h] has selective search's one-pixel-short w = x1 - x0 - 1, and becomes the inclusive
 * indices [x, y, x + w - 1, y + h - 1]. */
export function authorsInclusive(b: Box): Box {
  return [b[0], b[1], b[2] - 2, b[3] - 2];
}

/** Inclusive boxes overlap when each one's start lies strictly before the other's end (both axes). */
function overlaps(a: Box, b: Box): boolean {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/** A crop as inclusive pixel indices of the image it is cut from. */
function inclusiveRegion(c: Crop): Box {
  return [c.x, c.y, c.x + c.w - 1, c.y + c.h - 1];
}

/** Boxes (inclusive) clipped to a crop and moved into its frame; those that do not overlap it are
 * dropped, and when none is left the whole view stands in (id 0: the authors' first id). */
export function clipToCrop(boxes: readonly Box[], ids: readonly number[], crop: Crop): { boxes: Box[]; ids: number[] } {
  const r = inclusiveRegion(crop);
  const out: { boxes: Box[]; ids: number[] } = { boxes: [], ids: [] };
  boxes.forEach((b, i) => {
    if (!overlaps(r, b)) return;
    out.boxes.push([Math.max(r[0], b[0]) - crop.x, Math.max(r[1], b[1]) - crop.y, Math.min(r[2], b[2]) - crop.x, Math.min(r[3], b[3]) - crop.y]);
    out.ids.push(ids[i]);
  });
  if (!out.boxes.length) return { boxes: [[0, 0, crop.w - 1, crop.h - 1]], ids: [0] };
  return out;
}

/** The authors' level rule on an integer box in view pixels: size = sqrt((x2 - x1 + 1)(y2 - y1 + 1)),
 * the first level whose threshold (t0, t1, t2, OFFICIAL_MAX_SIZE) it does not exceed; -1 above. */
export function officialLevel(b: Box, t: readonly [number, number, number]): number {
  const size = Math.sqrt((b[2] - b[0] + 1) * (b[3] - b[1] + 1));
  return [...t, OFFICIAL_MAX_SIZE].findIndex((l) => size <= l);
}

/** Inclusive box relative to a crop of cropW x cropH -> the view of width x height: the integer box
 * the level is read from (coordinates truncated, as numpy's astype(int)), the normalised box
 * (x / cropW, y / cropH), flipped as x1' = 1 - x2, x2' = 1 - x1 when `flip`, and that box in the
 * view's pixels. */
export function officialViewBox(b: Box, cropW: number, cropH: number, width: number, height: number, flip: boolean): { integer: Box; normalized: Box; pixels: Box } {
  const integer: Box = [Math.trunc(b[0] / cropW * width), Math.trunc(b[1] / cropH * height), Math.trunc(b[2] / cropW * width), Math.trunc(b[3] / cropH * height)];
  const n: Box = [b[0] / cropW, b[1] / cropH, b[2] / cropW, b[3] / cropH];
  const normalized: Box = flip ? [1 - n[2], n[1], 1 - n[0], n[3]] : n;
  return { integer, normalized, pixels: [normalized[0] * width, normalized[1] * height, normalized[2] * width, normalized[3] * height] };
}

/** The authors' jitter of an inclusive box: x1 += r w, y1 += r h, then the width and height grow by
 * r w, r h (w = x2 - x1 + 1), each r ~ U[-range, range]; with probability p, else unchanged. */
function jitterInclusive(rng: Rng, b: Box, p: number, range: number): Box {
  if (!rng.bool(p)) return b;
  const [r0, r1, r2, r3] = [0, 1, 2, 3].map(() => rng.uniform(-range, range));
  const w = b[2] - b[0] + 1;
  const h = b[3] - b[1] + 1;
  const x1 = b[0] + r0 * w;
  const y1 = b[1] + r1 * h;
  return [x1, y1, x1 + (w + r2 * w) - 1, y1 + (h + r3 * h) - 1];
}

/** K of the candidates without replacement (all of them, in order, when there are fewer). */
function pick(rng: Rng, candidates: readonly number[], k: number): number[] {
  if (candidates.length < k) return candidates.slice();
  const pool = candidates.slice();
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(pool.length - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k);
}

/** Pads a clipped set to K by drawing, with replacement, among its boxes whose id is in `common`
 * (the authors' pad_bboxs_with_common). With no such box (where the authors' code stops) it draws
 * among all of its boxes; those pads then match nothing. */
function padTo(rng: Rng, set: { boxes: Box[]; ids: number[] }, common: ReadonlySet<number>, k: number): { boxes: Box[]; ids: number[] } {
  const pool = set.ids.map((id, i) => (common.has(id) ? i : -1)).filter((i) => i >= 0);
  const from = pool.length ? pool : set.ids.map((_, i) => i);
  const out = { boxes: set.boxes.slice(), ids: set.ids.slice() };
  while (out.ids.length < k) {
    const i = from[rng.int(from.length)];
    out.boxes.push(set.boxes[i]);
    out.ids.push(set.ids[i]);
  }
  return out;
}

/**
 * The authors' box pipeline (RECIPE.md "The authors' box pipeline"), for views cropped from the
 * raw image. Proposals become inclusive pixel indices (authorsInclusive; no proposals: the whole
 * image [0, 0, W-1, H-1]). Per pair (V1, V) for each view V with a crop of its own: the proposals
 * overlapping the crop (strictly), K drawn without replacement (all if fewer); the draw is accepted
 * when every pair has at least `least` of them, `least` starting at max(K // 2, 1) and halving
 * after each failed try (crops drawn again); after OFFICIAL_TRIES tries the last draw stands. V1's
 * copies are jittered (FPN), each pair's on its own. Each side is clipped to its crop (clipToCrop)
 * and padded to K on its own among the boxes whose id both sides hold (padTo). A later view on the
 * shared crop (the authors' SoCo* V4 is V2 resized) shares V2's set and its V1 set. Every
 * set is then scaled to its view (officialViewBox): level from the integer box (officialLevel),
 * RoIAlign boxes from the normalised ones, flipped with their view (V1 once for all its sets).
 */
function sampleOfficialViews(rng: Rng, width: number, height: number, proposals: readonly Box[], o: GeometryOptions): ImageViews {
  if (!o.cropFromRaw || !o.keepClipped)
    throw new RangeError("boxPipeline 'official' is the authors' path: it crops the raw image and clips the proposals (cropFromRaw and keepClipped)");
  const props: Box[] = proposals.length ? proposals.map(authorsInclusive) : [[0, 0, width - 1, height - 1]];
  const specs = viewSpecs(o);
  const whole: Crop = { x: 0, y: 0, w: width, h: height };
  // The view whose draw each view uses: views on the shared crop use the first of them's.
  const leaderOf = (v: number): number => (specs[v].crop === 'shared' ? specs.findIndex((s) => s.crop === 'shared') : v);
  let least = Math.max(Math.floor(o.k / 2), 1);
  let crops: Crop[] = [];
  let drawn = new Map<number, number[]>();  // leader view -> proposal indices
  for (let t = 0; t < OFFICIAL_TRIES; t++) {
    const shared = randomResizedCrop(rng, width, height, o.cropScale, o.cropRatio);
    crops = specs.map((s) => (s.crop === 'full' ? whole : s.crop === 'shared' ? shared : randomResizedCrop(rng, width, height, o.cropScale, o.cropRatio)));
    drawn = new Map();
    for (let v = 1; v < specs.length; v++) {
      if (leaderOf(v) !== v) continue;
      // The crop's overlap with V1 (the whole image) is the crop itself, when they overlap by the rule.
      const region = inclusiveRegion(crops[v]);
      const candidates = overlaps(inclusiveRegion(whole), region) ? props.map((_, i) => i).filter((i) => overlaps(region, props[i])) : [];
      drawn.set(v, pick(rng, candidates, o.k));
    }
    if ([...drawn.values()].every((d) => d.length >= least)) break;
    least = Math.max(Math.floor(least / 2), 1);
  }
  const flips = specs.map(() => rng.bool(o.flipProb));

  // Inclusive crop-relative boxes per set, before scaling.
  const raw: { view: number; boxes: Box[]; ids: number[] }[] = [];
  const pairs: [number, number][] = [];
  const setOf = new Map<number, { v1: number; own: number }>();  // leader view -> its V1 set and its own set
  for (let v = 1; v < specs.length; v++) {
    const leader = leaderOf(v);
    let made = setOf.get(leader);
    if (!made) {
      const ids = drawn.get(leader) as number[];
      const v1Boxes = ids.map((i) => (o.jitter ? jitterInclusive(rng, props[i], o.jitterProb, o.jitterRange) : props[i]));
      const a = clipToCrop(v1Boxes, ids, whole);
      const b = clipToCrop(ids.map((i) => props[i]), ids, crops[leader]);
      const inB = new Set(b.ids);
      const common = new Set(a.ids.filter((id) => inB.has(id)));
      made = { v1: raw.push({ view: 0, ...padTo(rng, a, common, o.k) }) - 1, own: raw.push({ view: leader, ...padTo(rng, b, common, o.k) }) - 1 };
      setOf.set(leader, made);
    }
    const own = leader === v ? made.own : raw.push({ ...raw[made.own], view: v }) - 1;
    pairs.push([made.v1, own]);
  }

  const sets: BoxSet[] = raw.map((r) => {
    const crop = crops[r.view];
    const size = specs[r.view].size;
    const scaled = r.boxes.map((b) => officialViewBox(b, crop.w, crop.h, size, size, flips[r.view]));
    return {
      view: r.view, ids: r.ids, inclusive: r.boxes, boxes: scaled.map((s) => s.pixels),
      levels: scaled.map((s) => {
        const level = officialLevel(s.integer, o.levelThresholds);
        return level < 0 && o.arch === 'c4' ? 3 : level;  // C4 pools every box on C4: no size limit
      }),
    };
  });
  const views: ViewGeometry[] = specs.map((spec, v) => {
    const first = sets.find((s) => s.view === v) as BoxSet;
    const a = affine('source', crops[v], spec.size, flips[v], width, height, o.v1Size);
    return { name: spec.name, width: spec.size, height: spec.size, base: 'source', crop: crops[v], flip: flips[v], ...a, boxes: first.boxes, levels: first.levels };
  });
  const fallback = proposals.length === 0 || [...drawn.values()].some((d) => d.length === 0);
  return { ids: sets[0].ids, fallback, views, sets, pairs };
}

/**
 * Table 5(c) "Random": n boxes drawn uniformly in a width x height image to stand in for the
 * selective-search proposals. The paper only says "we randomly generate K bounding boxes in each
 * of the training images"; so that only the boxes' content differs from the proposals they
 * replace, they follow the statistics the authors' proposal filter (RECIPE "ratio3size0308")
 * enforces: size sqrt(w*h) uniform in [0.3, 0.8] x sqrt(W*H), aspect w/h log-uniform in [1/3, 3]
 * (redrawn, up to 10 times, until the box fits the image; then shrunk to fit), position uniform,
 * integer pixel extents as selective search gives.
 */
export function randomBoxes(rng: Rng, width: number, height: number, n: number): Box[] {
  if (!(width > 0 && height > 0)) throw new RangeError(`image size ${width}x${height}`);
  const out: Box[] = [];
  const side = Math.sqrt(width * height);
  for (let i = 0; i < n; i++) {
    let w = 0;
    let h = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      const s = side * rng.uniform(0.3, 0.8);
      const a = Math.exp(rng.uniform(Math.log(1 / 3), Math.log(3)));
      w = Math.max(1, Math.round(s * Math.sqrt(a)));
      h = Math.max(1, Math.round(s / Math.sqrt(a)));
      if (w <= width && h <= height) break;
    }
    w = Math.min(w, Math.floor(width));
    h = Math.min(h, Math.floor(height));
    const x = rng.int(Math.floor(width) - w + 1);
    const y = rng.int(Math.floor(height) - h + 1);
    out.push([x, y, x + w, y + h]);
  }
  return out;
}
