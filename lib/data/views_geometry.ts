// Per-image view geometry for SoCo (RECIPE.md "Views"): which crop each view takes, whether it is
// flipped, where the K sampled proposals land in it, and each box's FPN level. Pure and seeded;
// the pixels are produced later (batched on the device) from the crops recorded here.
//
// Coordinates: continuous pixel extents, a pixel i covers [i, i+1). Boxes are [x1, y1, x2, y2].
// A view maps source-image coordinates to its own by x' = sx*x + tx, y' = sy*y + ty (sx < 0 when
// flipped): resizing and cropping are exactly affine in this convention (half-pixel centres, as
// PIL, torchvision and roi_align(aligned=True) use), so boxes follow the pixels.

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
}

export const PAPER_GEOMETRY: GeometryOptions = {
  arch: 'fpn', socoStar: false, k: 4, cropScale: [0.5, 1], cropRatio: [3 / 4, 4 / 3], cropFromRaw: false,
  layout: 'paper', keepClipped: false, jitter: true, jitterProb: 0.5, jitterRange: 0.1, flipProb: 0.5,
  v1Size: 224, v2Size: 224, v3Size: 112, v4Size: 192, multiView: true, levelThresholds: [48, 96, 192],
};

/** The authors' code (preset `official`). */
export function officialGeometry(arch: 'fpn' | 'c4' = 'fpn', socoStar = false): GeometryOptions {
  return {
    ...PAPER_GEOMETRY, arch, socoStar, cropFromRaw: true, layout: 'official', keepClipped: true,
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
  /** K boxes in view pixels, in the order of ImageViews.ids. */
  boxes: Box[];
  /** FPN level per box: 0..3 = P2..P5. */
  levels: number[];
}

export interface ImageViews {
  /** Proposal index per sampled box (repeats when padded); -1 = fallback box (the whole image
   * when there are no proposals, else the common part of the crops). */
  ids: number[];
  /** True when no proposal was usable and the fallback box stands in (counted by the loader). */
  fallback: boolean;
  views: ViewGeometry[];
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
 * Samples the views of one image of size width x height with proposals (source pixels).
 * An image with no proposals uses the whole image as its one proposal (RECIPE); when no
 * proposal survives the crops, the intersection of the crops stands in (ids = -1, fallback).
 */
export function sampleViews(rng: Rng, width: number, height: number, proposals: readonly Box[],
  o: GeometryOptions = PAPER_GEOMETRY): ImageViews {
  if (!(width > 0 && height > 0)) throw new RangeError(`image size ${width}x${height}`);
  if (!(Number.isInteger(o.k) && o.k >= 1)) throw new RangeError(`k must be a positive integer, got ${o.k}`);
  for (const key of ['v1Size', 'v2Size', 'v3Size', 'v4Size'] as const)
    if (!(Number.isInteger(o[key]) && o[key] >= 1)) throw new RangeError(`${key} must be a positive integer, got ${o[key]}`);
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
  return { ids, fallback, views };
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
