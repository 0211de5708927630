// Decoder checks against PIL (Debian's /usr/bin/python3, PIL 9.4 over the same libjpeg-turbo).
//
// Tolerance: with the same libjpeg-turbo, ISLOW IDCT and fancy upsampling on both sides the
// decode is bit-exact (measured: max |diff| = 0 on every fixture), and the resize reimplements
// PIL's fixed-point arithmetic, so it is bit-exact too. Lossless formats must match exactly;
// for JPEG and lossy WebP we allow max 2 and mean 0.05 per channel so that a build against a
// different libjpeg-turbo/libwebp than PIL's (rounding in SIMD colour conversion) still passes,
// while a real bug (wrong channel order, orientation, CMYK inversion, off-by-one resize) gives
// mean differences of tens of levels.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decodeImage, readImageSize, isImageDecodeError, DecodedImage } from '../lib/data/image';
import { SYSTEM_PYTHON } from './reference/python';

const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const PYTHON = SYSTEM_PYTHON;
const images = ['train', 'heldout'].flatMap((d) =>
  fs.readdirSync(path.join(FIXTURES, 'images', d)).sort().map((f) => path.join(FIXTURES, 'images', d, f)));
const GOOD_ODD = ['cmyk.jpg', 'gray.jpg', 'gray.png', 'gray16.png', 'rgb16.png', 'palette.png', 'rgba.png',
  'interlaced.png', 'exif2.jpg', 'exif3.jpg', 'exif4.jpg', 'exif5.jpg', 'exif6.jpg', 'exif7.jpg', 'exif8.jpg',
  'lossy.webp', 'lossless_rgba.webp', 'small.jpg', 'progressive.jpg'].map((f) => path.join(FIXTURES, 'bad', f));
const BAD: [string, string, RegExp][] = [
  ['truncated.jpg', 'IMAGE_TRUNCATED', /truncated JPEG/],
  ['truncated.png', 'IMAGE_TRUNCATED', /truncated PNG/],
  ['corrupt.jpg', 'IMAGE_CORRUPT', /corrupt JPEG/],
  ['empty.jpg', 'IMAGE_EMPTY', /empty file/],
  ['text.jpg', 'IMAGE_UNSUPPORTED', /unsupported format/],
];
const ALL_GOOD = [...images, ...GOOD_ODD];

interface Ref { file: string; width: number; height: number; data: Uint8Array }

function pilReference(mode: 'full' | 'resize224' | 'draft224', files: string[]): Map<string, Ref> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-pil-'));
  try {
    const out = execFileSync(PYTHON, [path.join(FIXTURES, 'pil_reference.py'), dir, mode, ...files],
      { encoding: 'utf8', maxBuffer: 1 << 24 });
    const refs = new Map<string, Ref>();
    for (const line of out.trim().split('\n')) {
      const r = JSON.parse(line) as { file: string; width: number; height: number; raw?: string; error?: string };
      if (r.error !== undefined || r.raw === undefined) throw new Error(`PIL failed on ${r.file}: ${r.error}`);
      refs.set(r.file, { file: r.file, width: r.width, height: r.height, data: new Uint8Array(fs.readFileSync(r.raw)) });
    }
    return refs;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function diff(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  assert.equal(a.length, b.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / a.length };
}

const lossless = (f: string) => f.endsWith('.png') || f.endsWith('lossless_rgba.webp');

function assertClose(ours: DecodedImage, ref: Ref, exact: boolean) {
  const name = path.basename(ref.file);
  assert.deepEqual([ours.width, ours.height], [ref.width, ref.height], `${name}: size`);
  assert.equal(ours.data.length, ours.width * ours.height * 3);
  const d = diff(ours.data, ref.data);
  if (exact) assert.equal(d.max, 0, `${name}: max diff ${d.max}`);
  else assert.ok(d.max <= 2 && d.mean <= 0.05, `${name}: max ${d.max} mean ${d.mean.toFixed(3)} vs PIL`);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error, 'rejects with an Error');
    return e;
  }
  throw new assert.AssertionError({ message: 'expected a rejection' });
}

// PNG chunk CRC (ISO 3309, as zlib's crc32), so that a rewritten file is valid for libpng too.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The same PNG with its zlib stream re-split into IDAT chunks of `size` bytes (the last shorter). */
function splitIdat(png: Buffer, size: number): Buffer {
  const before: Buffer[] = [png.subarray(0, 8)];
  const after: Buffer[] = [];
  const data: Buffer[] = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const whole = png.subarray(at, at + 12 + len);
    if (type === 'IDAT') data.push(png.subarray(at + 8, at + 8 + len));
    else (data.length ? after : before).push(whole);
    at += 12 + len;
  }
  const stream = Buffer.concat(data);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += size) {
    const body = Buffer.concat([Buffer.from('IDAT', 'latin1'), stream.subarray(at, Math.min(stream.length, at + size))]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length - 4);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    chunks.push(head, body, crc);
  }
  return Buffer.concat([...before, ...chunks, ...after]);
}

describe('image decode', function () {
  let full: Map<string, Ref>;
  let resized: Map<string, Ref>;
  let drafted: Map<string, Ref>;

  before(function () {
    full = pilReference('full', ALL_GOOD);
    resized = pilReference('resize224', ALL_GOOD);
    drafted = pilReference('draft224', ALL_GOOD.filter((f) => f.endsWith('.jpg')));
  });

  it('has the real-photo fixture set', function () {
    assert.ok(images.length >= 12, `${images.length} photos`);
    assert.ok(fs.readdirSync(path.join(FIXTURES, 'images', 'heldout')).length >= 3);
  });

  it('decodes every photo and odd-but-valid file like PIL (full size)', async function () {
    for (const f of ALL_GOOD) {
      const ours = await decodeImage(f);
      assertClose(ours, full.get(f)!, lossless(f));
      assert.deepEqual([ours.originalWidth, ours.originalHeight], [ours.width, ours.height]);
    }
  });

  it('applies EXIF orientation 2..8 (upright 640x427 rocket)', async function () {
    const upright = await decodeImage(path.join(FIXTURES, 'images', 'train', 'rocket.jpg'));
    for (let o = 2; o <= 8; o++) {
      const im = await decodeImage(path.join(FIXTURES, 'bad', `exif${o}.jpg`));
      assert.deepEqual([im.width, im.height], [640, 427], `orientation ${o}`);
      // Re-encoding costs ~2.5 levels on average; a wrong transform costs tens.
      assert.ok(diff(im.data, upright.data).mean < 4, `orientation ${o} is upright`);
    }
  });

  it('resizes to 224x224 like PIL resize(BILINEAR) when no DCT scaling applies', async function () {
    for (const f of ALL_GOOD) {
      // minWidth/minHeight = full size: forbids DCT scaling, so this checks the resampler alone.
      const size = await readImageSize(f);
      const ours = await decodeImage(f, { width: 224, height: 224, minWidth: size.width, minHeight: size.height });
      assertClose(ours, resized.get(f)!, lossless(f));
    }
  });

  it('DCT-scaled decode to 224 matches PIL draft()+resize, and roughly full decode+resize', async function () {
    let scaled = 0;
    for (const [f, ref] of drafted) {
      const ours = await decodeImage(f, { width: 224, height: 224 });
      assertClose(ours, ref, false);
      // DCT scaling changes aliasing, not content: measured mean <= 2.6 levels on these photos.
      const d = diff(ours.data, resized.get(f)!.data);
      assert.ok(d.mean < 4, `${path.basename(f)}: mean ${d.mean.toFixed(2)} vs full decode`);
      if (d.max > 0) scaled++;
    }
    assert.ok(scaled >= 4, 'several photos are large enough to be DCT-scaled');
  });

  it('DCT scaling picks the smallest scale >= the hint, in display orientation', async function () {
    const face = path.join(FIXTURES, 'images', 'train', 'face.jpg'); // 1024x768
    const cases: [number, number, number, number][] = [
      [224, 224, 512, 384], [200, 190, 256, 192], [300, 300, 512, 384], [100, 96, 128, 96], [1024, 1, 1024, 768], [1, 1, 128, 96],
    ];
    for (const [mw, mh, w, h] of cases) {
      const im = await decodeImage(face, { minWidth: mw, minHeight: mh });
      assert.deepEqual([im.width, im.height, im.originalWidth, im.originalHeight], [w, h, 1024, 768], `hint ${mw}x${mh}`);
    }
    // exif6 stores 427x640; the hint applies to the displayed 640x427.
    const im = await decodeImage(path.join(FIXTURES, 'bad', 'exif6.jpg'), { minWidth: 320, minHeight: 200 });
    assert.deepEqual([im.width, im.height], [320, 214]);
  });

  it('reads sizes from headers (EXIF applied)', async function () {
    for (const f of ALL_GOOD) {
      const s = await readImageSize(f);
      assert.deepEqual([s.width, s.height], [full.get(f)!.width, full.get(f)!.height], path.basename(f));
    }
    assert.equal((await readImageSize(path.join(FIXTURES, 'bad', 'lossy.webp'))).format, 'webp');
  });

  it('fails on each bad file with an Error naming the file and the reason', async function () {
    for (const [f, code, re] of BAD) {
      const file = path.join(FIXTURES, 'bad', f);
      for (const call of [() => decodeImage(file), () => decodeImage(file, { width: 224, height: 224 })]) {
        const e = await rejection(call());
        assert.ok(isImageDecodeError(e), `${f}: ${e.message}`);
        assert.equal(e.code, code, `${f}: ${e.message}`);
        assert.equal(e.file, file);
        assert.ok(e.message.startsWith(`${file}: `), e.message);
        assert.match(e.message, re);
      }
    }
    const missing = await rejection(decodeImage(path.join(FIXTURES, 'bad', 'no-such-file.jpg')));
    assert.match(missing.message, /no-such-file\.jpg: cannot open file \(No such file or directory\)/);
    assert.ok(isImageDecodeError(missing) && missing.code === 'IMAGE_IO');
  });

  it('decodes Buffers, naming them in errors', async function () {
    const f = path.join(FIXTURES, 'images', 'heldout', 'flower.jpg');
    const fromFile = await decodeImage(f, { width: 224, height: 224 });
    const fromBuf = await decodeImage(fs.readFileSync(f), { width: 224, height: 224 });
    assert.equal(diff(fromFile.data, fromBuf.data).max, 0);
    const trunc = fs.readFileSync(path.join(FIXTURES, 'bad', 'truncated.jpg'));
    assert.match((await rejection(decodeImage(trunc))).message, /^<buffer>: truncated JPEG/);
    assert.match((await rejection(decodeImage(trunc, { name: 'item 7' }))).message, /^item 7: truncated JPEG/);
  });

  it('decodes a PNG the same however its image data is split into IDAT chunks', async function () {
    for (const name of ['train/astronaut.png', 'heldout/camera.png', 'train/coins.png']) {
      const file = path.join(FIXTURES, 'images', name);
      const original = await decodeImage(file);
      const png = fs.readFileSync(file);
      for (const size of [Infinity, 1000, 1]) {
        const ours = await decodeImage(splitIdat(png, size), { name: `${name} (IDAT chunks of ${size})` });
        assert.equal(diff(ours.data, original.data).max, 0, `${name}, IDAT chunks of ${size} bytes`);
      }
    }
  });

  it('validates its arguments', async function () {
    const f = path.join(FIXTURES, 'images', 'heldout', 'flower.jpg');
    const bad: [unknown, unknown, RegExp][] = [
      [42, undefined, /source must be a file path or a Buffer/],
      ['', undefined, /empty path/],
      [new Float32Array(4), undefined, /source must be/],
      [f, 5, /options must be an object/],
      [f, { width: 224 }, /width and height must be given together/],
      [f, { minWidth: -1 }, /minWidth must be an integer/],
      [f, { height: 1.5, width: 2 }, /height must be an integer/],
      [f, { minHeight: '3' }, /minHeight must be a number/],
      [f, { width: 70000, height: 1 }, /width must be an integer in \[0, 65535\]/],
    ];
    const decode = decodeImage as (s: unknown, o: unknown) => Promise<DecodedImage>;
    for (const [src, opts, re] of bad) assert.match((await rejection(decode(src, opts))).message, re);
  });

  it('decodes concurrently with the same results as one at a time, off the event loop', async function () {
    const files = [...images, ...images, ...images];
    const sequential: DecodedImage[] = [];
    for (const f of files) sequential.push(await decodeImage(f, { width: 224, height: 224 }));
    // The event loop keeps turning during the parallel batch: counted, not timed.
    let turns = 0;
    let running = true;
    const spin = (): void => { if (running) { turns++; setImmediate(spin); } };
    const batch = Promise.all(files.map((f) => decodeImage(f, { width: 224, height: 224 })));
    setImmediate(spin);
    const parallel = await batch;
    running = false;
    parallel.forEach((im, i) => assert.equal(diff(im.data, sequential[i].data).max, 0, files[i]));
    assert.ok(turns >= 1, `the event loop turned ${turns} times during ${files.length} decodes`);
  });
});
