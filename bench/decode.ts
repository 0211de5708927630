// Decode benchmarks against PIL (bench/decode_ref.py) on the same real photos
// (test/fixtures/images: 11 JPEGs, 3 PNGs), one image at a time (one decode in flight, one thread
// on both sides), wall time per image. Both sides decode once untimed, then ROUNDS rounds
// alternate, REPS passes of ours then REPS of PIL's; each figure is the median over rounds of the
// median pass. Before timing, the outputs are compared pixel for pixel.
//
// `decode`: to the V1 size, 224x224, both with JPEG DCT scaling to the smallest scale >= 224 and
//   an antialiased bilinear resize: ours (libjpeg-turbo scaled decode + PIL's resize, native/
//   image.cc) against PIL's open + draft('RGB', (224, 224)) + convert('RGB') + resize((224, 224),
//   BILINEAR). The same pixels on both sides.
// `decode-full`: the full-size decode, ours against PIL's open + convert('RGB'). The same pixels.
// `decode-vs-authors-pipeline`: ours to 224 (as in `decode`) against PIL's open + convert('RGB') +
//   resize((224, 224), BILINEAR) without draft(), what the authors' pipeline pays per image: not
//   the same work (PIL decodes the JPEGs at full size) and not the same pixels (DCT scaling
//   aliases differently, within a few levels).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decodeImage } from '../lib/data/image';
import { SYSTEM_PYTHON } from '../test/reference/python';
import { PythonServer, median, report } from './util';

const ROOT = path.resolve(__dirname, '..', '..');
const ROUNDS = 5;
const REPS = 3;
type Size = { width: number; height: number } | undefined;
const V1: Size = { width: 224, height: 224 };

function photos(): string[] {
  const dir = path.join(ROOT, 'test', 'fixtures', 'images');
  return ['train', 'heldout'].flatMap((d) => fs.readdirSync(path.join(dir, d)).sort().map((f) => path.join(dir, d, f)));
}

/** Median over REPS passes of the mean seconds per image. */
async function ours(files: string[], size: Size): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint();
    for (const f of files) await decodeImage(f, size);  // sequential: one decode in flight
    times.push(Number(process.hrtime.bigint() - t0) / 1e9 / files.length);
  }
  return median(times);
}

/** How many photos decode to PIL's exact bytes in `mode`. */
async function samePixels(files: string[], size: Size, mode: string, ref: PythonServer): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-bench-decode-'));
  try {
    await ref.ask(`dump ${mode} ${dir}`);
    let same = 0;
    for (const f of files) {
      const d = (await decodeImage(f, size)).data;
      if (Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(fs.readFileSync(path.join(dir, `${path.basename(f)}.rgb`)))) same++;
    }
    return same;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  const files = photos();
  const ref = new PythonServer(path.join(ROOT, 'bench', 'decode_ref.py'), files, SYSTEM_PYTHON);
  try {
    const same = [await samePixels(files, V1, 'draft', ref), await samePixels(files, undefined, 'full', ref)];
    console.log(`decode: PIL's exact pixels on ${same[0]}/${files.length} photos at 224 (DCT-scaled), ${same[1]}/${files.length} at full size`);
    const arms = { v1: [] as number[], full: [] as number[], draft: [] as number[], nodraft: [] as number[], pilFull: [] as number[] };
    for (const f of files) { await decodeImage(f, V1); await decodeImage(f); }
    for (const mode of ['draft', 'nodraft', 'full']) await ref.ask(`time ${mode} 1`);
    for (let round = 0; round < ROUNDS; round++) {
      arms.v1.push(await ours(files, V1));
      arms.draft.push(Number(await ref.ask(`time draft ${REPS}`)));
      arms.nodraft.push(Number(await ref.ask(`time nodraft ${REPS}`)));
      arms.full.push(await ours(files, undefined));
      arms.pilFull.push(Number(await ref.ask(`time full ${REPS}`)));
    }
    const ms = (v: number[]): number => median(v) * 1e3;
    report('decode', ms(arms.v1), ms(arms.draft), 'ms/img', false);
    report('decode-full', ms(arms.full), ms(arms.pilFull), 'ms/img', false);
    report('decode-vs-authors-pipeline', ms(arms.v1), ms(arms.nodraft), 'ms/img', false);
  } finally {
    ref.close();
  }
}

if (require.main === module) {
  run().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
