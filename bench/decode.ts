// `bench: decode`: decode to the V1 size (224x224) per image, ours (libjpeg-turbo with DCT scaling
// + PIL-exact antialiased bilinear, native/image.cc) against the authors' PIL pipeline
// (Image.open + convert('RGB') + resize((224, 224), BILINEAR)), on the same real photos, one
// image at a time (single thread on both sides). `decode-full` compares plain full-size decodes.
import * as fs from 'fs';
import * as path from 'path';
import { decodeImage } from '../lib/data/image';
import { python, report } from './util';

const ROOT = path.resolve(__dirname, '..', '..');
const REPS = 15;

function photos(): string[] {
  const dir = path.join(ROOT, 'test', 'fixtures', 'images');
  return ['train', 'heldout'].flatMap((d) => fs.readdirSync(path.join(dir, d)).sort().map((f) => path.join(dir, d, f)));
}

async function perImage(files: string[], opts: { width: number; height: number } | undefined): Promise<number> {
  const once = async (): Promise<void> => {
    for (const f of files) await decodeImage(f, opts);  // sequential: one decode in flight
  };
  await once();
  const times: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9 / files.length);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export async function run(): Promise<void> {
  const files = photos();
  const script = path.join(ROOT, 'bench', 'decode_ref.py');
  const ours = await perImage(files, { width: 224, height: 224 });
  const ref = Number(python(script, ['v1', String(REPS), ...files]).trim());
  report('decode', ours * 1e3, ref * 1e3, 'ms/img', false);
  const oursFull = await perImage(files, undefined);
  const refFull = Number(python(script, ['full', String(REPS), ...files]).trim());
  report('decode-full', oursFull * 1e3, refFull * 1e3, 'ms/img', false);
}

if (require.main === module) {
  run().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
