// The pixel side of the views: from decoded images and the crops that lib/data/views_geometry.ts
// drew, the [B, 3, h, w] tensors of each view, on the training device. A crop is a slice (no
// copy) resized with antialiased bilinear interpolation: torchvision's resized_crop(antialias=
// True) on tensors, PIL's bilinear resize up to rounding (test/loader.test.ts checks it against
// torchvision). Flips are not applied here: the augmentation applies them, with the flags the
// geometry drew, so the boxes (already flipped by the geometry) and the pixels agree.
import { Tensor, interpolate, stack, tensor, tidy } from '../torch';
import { native } from '../torch/native';
import { w } from '../torch/tensor';
import { ImageViews, ViewGeometry } from './views_geometry';

/** Decoded RGB images as the loader hands them over. */
export interface RgbImage {
  /** height * width * 3 bytes, row-major RGB. */
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Stacks equally sized RGB images into one uint8 [B, H, W, 3] CPU tensor (one copy into a single
 * buffer), pinned when `pin` so the host-to-device copy can be asynchronous.
 */
export function stackRgb(images: readonly RgbImage[], pin = false): Tensor {
  if (images.length === 0) throw new RangeError('stackRgb: no images');
  const { width, height } = images[0];
  const size = width * height * 3;
  const buf = new Uint8Array(size * images.length);
  images.forEach((im, i) => {
    if (im.width !== width || im.height !== height)
      throw new RangeError(`stackRgb: image ${i} is ${im.width}x${im.height}, image 0 is ${width}x${height}`);
    if (im.data.length !== size) throw new RangeError(`stackRgb: image ${i} has ${im.data.length} bytes, expected ${size}`);
    buf.set(im.data, i * size);
  });
  const t = tensor(buf, { shape: [images.length, height, width, 3] });
  if (!pin) return t;
  const pinned = t.pinMemory();
  t.dispose();
  return pinned;
}

/**
 * One RGB image as a uint8 [H, W, 3] CPU tensor. Pixels straight from decodeImage are shared, not
 * copied (the tensor keeps the decoder's buffer alive): write to neither afterwards. Other arrays
 * are copied.
 */
export function rgbTensor(im: RgbImage, pin = false): Tensor {
  if (im.data.length !== im.width * im.height * 3)
    throw new RangeError(`rgbTensor: ${im.data.length} bytes for ${im.width}x${im.height} RGB`);
  const t = w(native.fromDecoded(im.data, [im.height, im.width, 3]));
  if (!pin) return t;
  const pinned = t.pinMemory();
  t.dispose();
  return pinned;
}

/** uint8 [..., H, W, 3] (any device) -> float [..., 3, H, W] in [0, 1] on `device`. */
export function toFloatImages(rgb: Tensor, device: string): Tensor {
  return tidy(() => {
    const d = rgb.to(device, undefined, { nonBlocking: true });
    const perm = d.ndim === 4 ? [0, 3, 1, 2] : [2, 0, 1];
    // Transposed while still 1 byte a value; then ToTensor's float division (uint8 / 255 is
    // a true division to float32: one pass for the conversion and the division).
    return d.permute(...perm).contiguous().div(255);
  });
}

/** What renderViews reads the pixels from. */
export interface ViewInput {
  /** [B, 3, S, S] float in [0, 1]: every image resized to the V1 size S (the paper's base). */
  v1?: Tensor;
  /** Per image, [3, H, W] float in [0, 1] at the resolution the geometry's source coordinates
   * refer to; needed when a view crops the raw image (the authors' layout) or when v1 is absent. */
  sources?: readonly Tensor[];
}

/** torchvision resize(antialias=True). When neither side shrinks, the antialiasing filter is the
 * bilinear one (same taps, same edge handling), and LibTorch's plain kernel is ~3x faster. */
function resize(x: Tensor, w: number, h: number): Tensor {
  const [, , ih, iw] = x.shape;
  if (ih === h && iw === w) return x;
  return interpolate(x, { size: [h, w], mode: 'bilinear', alignCorners: false, antialias: h < ih || w < iw });
}

/** Images [3, H, W] of any sizes, each resized (antialiased) to w x h, as one [N, 3, h, w] batch. */
export function resizeImages(images: readonly Tensor[], w: number, h: number): Tensor {
  if (images.length === 0) throw new RangeError('resizeImages: no images');
  return tidy(() => stack(images.map((im) => {
    if (im.ndim !== 3 || im.size(0) !== 3) throw new RangeError(`resizeImages: images must be [3, H, W], got [${im.shape}]`);
    return resize(im.unsqueeze(0), w, h).squeeze(0);
  })));
}

function sameCrop(a: ViewGeometry, b: ViewGeometry): boolean {
  return a.base === b.base && a.crop.x === b.crop.x && a.crop.y === b.crop.y && a.crop.w === b.crop.w && a.crop.h === b.crop.h;
}

/**
 * Renders every view of a batch (unflipped): one [B, 3, h, w] tensor per view, in the order of
 * the geometry's views. A view whose crops equal an earlier, larger view's (the paper's V3 = V2
 * at 112) is that view downsampled, in one batched call. The V1 output may be input.v1 itself.
 */
export function renderViews(input: ViewInput, geoms: readonly ImageViews[], v1Size: number): Tensor[] {
  const b = geoms.length;
  if (b === 0) throw new RangeError('renderViews: empty batch');
  const nviews = geoms[0].views.length;
  for (const g of geoms)
    if (g.views.length !== nviews) throw new RangeError(`renderViews: images have ${g.views.length} and ${nviews} views`);
  if (input.v1) {
    const s = input.v1.shape;
    if (s.length !== 4 || s[0] !== b || s[1] !== 3 || s[2] !== v1Size || s[3] !== v1Size)
      throw new RangeError(`renderViews: v1 must be [${b}, 3, ${v1Size}, ${v1Size}], got [${s}]`);
  }
  if (input.sources && input.sources.length !== b)
    throw new RangeError(`renderViews: ${input.sources.length} sources for ${b} images`);
  const source = (i: number, what: string): Tensor => {
    if (!input.sources) throw new RangeError(`renderViews: ${what} needs the source images (ViewInput.sources)`);
    return input.sources[i];
  };

  return tidy(() => {
    let v1: Tensor | undefined = input.v1;
    const v1Batch = (): Tensor => {
      // The paper's base: every image squashed to S x S.
      if (!v1) v1 = stack(geoms.map((_, i) => resize(source(i, 'a crop of V1').unsqueeze(0), v1Size, v1Size).squeeze(0)));
      return v1;
    };
    const out: Tensor[] = [];
    for (let v = 0; v < nviews; v++) {
      const first = geoms[0].views[v];
      const { width: w, height: h } = first;
      for (const g of geoms)
        if (g.views[v].width !== w || g.views[v].height !== h) throw new RangeError(`renderViews: view ${v} sizes differ across images`);
      // Reuse an earlier view with the same crops when it is at least as large.
      const prev = out.findIndex((_, u) => geoms.every((g) => sameCrop(g.views[u], g.views[v])) &&
        geoms[0].views[u].width >= w && geoms[0].views[u].height >= h);
      if (prev >= 0) {
        out.push(resize(out[prev], w, h));
        continue;
      }
      const full = geoms.every((g, i) => {
        const c = g.views[v].crop;
        return g.views[v].base === 'source' && c.x === 0 && c.y === 0 &&
          (input.sources ? c.w === input.sources[i].size(2) && c.h === input.sources[i].size(1) : true);
      });
      if (full && w === v1Size && h === v1Size) {
        out.push(v1Batch());
        continue;
      }
      out.push(stack(geoms.map((g, i) => tidy(() => {
        const { base, crop } = g.views[v];
        // A copy of image i rather than a view of the batch: the addon reports every handle's
        // whole storage to V8, and views of a large batch trigger needless full GCs.
        const img = base === 'v1' ? v1Batch().indexSelect(0, tensor(BigInt64Array.of(BigInt(i))).to(v1Batch().device))
          : source(i, `view ${first.name} (a crop of the raw image)`).unsqueeze(0);
        const [, , ih, iw] = img.shape;
        if (crop.x < 0 || crop.y < 0 || crop.x + crop.w > iw || crop.y + crop.h > ih)
          throw new RangeError(`renderViews: image ${i} view ${first.name}: crop ${JSON.stringify(crop)} outside its ${iw}x${ih} ${base} image`);
        return resize(img.narrow(2, crop.y, crop.h).narrow(3, crop.x, crop.w).contiguous(), w, h).squeeze(0);
      }))));
    }
    return out;
  });
}
