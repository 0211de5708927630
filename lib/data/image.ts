// Image decoding for the data loader (native/image.cc): JPEG, PNG and WebP to RGB uint8 HWC,
// decoded on the addon's own threads, several images at once, off the event loop.
// Output matches PIL's exif_transpose(Image.open(f)).convert('RGB') (bit-exact with Debian's
// PIL on the same libjpeg-turbo) and, with width/height, PIL's resize(BILINEAR) (antialiased).
import { native } from '../torch/native';

export type ImageFormat = 'jpeg' | 'png' | 'webp';

export interface DecodeOptions {
  /** DCT-scaling hint (JPEG only): decode at the smallest 1/1, 1/2, 1/4 or 1/8 scale whose
   * size is still >= minWidth x minHeight (display orientation). */
  minWidth?: number;
  minHeight?: number;
  /** Exact output size (both or neither), by PIL-style antialiased bilinear resampling. Implies
   * minWidth/minHeight = width/height unless those are given. */
  width?: number;
  height?: number;
  /** Name used in error messages when source is a Buffer. */
  name?: string;
}

export interface DecodedImage {
  /** RGB, row-major, height * width * 3 bytes. */
  data: Uint8Array;
  width: number;
  height: number;
  /** Full-resolution size after EXIF orientation, before DCT scaling or resizing. */
  originalWidth: number;
  originalHeight: number;
  format: ImageFormat;
}

export interface ImageSize {
  width: number;
  height: number;
  format: ImageFormat;
}

/** Codes set on the Error's `code` property; `file` names the input. */
export type ImageErrorCode =
  | 'IMAGE_IO' | 'IMAGE_EMPTY' | 'IMAGE_UNSUPPORTED' | 'IMAGE_TRUNCATED' | 'IMAGE_CORRUPT'
  | 'IMAGE_TOO_LARGE' | 'IMAGE_ERROR';

export interface ImageDecodeError extends Error {
  code: ImageErrorCode;
  file: string;
}

export function isImageDecodeError(e: unknown): e is ImageDecodeError {
  return e instanceof Error && typeof (e as Partial<ImageDecodeError>).code === 'string' &&
    (e as ImageDecodeError).code.startsWith('IMAGE_');
}

/** Decodes a file (path) or encoded bytes. Rejects with an ImageDecodeError naming the file. */
export async function decodeImage(source: string | Uint8Array, opts?: DecodeOptions): Promise<DecodedImage> {
  return native.decodeImage(source, opts) as Promise<DecodedImage>;
}

/** Reads only the header: the size in display orientation (EXIF applied) and the format. */
export async function readImageSize(source: string | Uint8Array, opts?: Pick<DecodeOptions, 'name'>): Promise<ImageSize> {
  return native.decodeImage(source, opts, true) as Promise<ImageSize>;
}

/**
 * Sets how many images this process decodes at once (the addon's decode threads, 4 at start;
 * `train --workers N`), whatever libuv's UV_THREADPOOL_SIZE is. Takes effect for the decodes that
 * start next. Returns the count.
 */
export function setDecodeThreads(n: number): number {
  return native.decodeThreads(n) as number;
}

export function decodeThreads(): number {
  return native.decodeThreads() as number;
}

/** Versions of the codec libraries the decoder uses (libjpeg-turbo, libpng, libwebp, libdeflate, zlib). */
export function imageCodecs(): Record<string, string> {
  return { ...native.imageCodecs };
}
