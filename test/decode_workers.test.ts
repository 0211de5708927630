// `train --workers N` is the number of images decoded at once. Counted, not timed: every image is
// a named pipe, so a decode blocks in open() until the test writes the photo into it, and the
// test sees each waiting decode (a non-blocking open for writing succeeds only once a reader has
// the pipe open). With N blocked decodes and none fed, exactly N readers must show up, never
// N + 1; libuv's pool (4 threads whatever N) stalled at 4.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SoCoLoader } from '../lib/data/loader';
import { decodeThreads, setDecodeThreads } from '../lib/data/image';
import { PAPER_GEOMETRY } from '../lib/data/views_geometry';

const ROOT = path.resolve(__dirname, '..', '..');
// 35 kB: fits a pipe's 64 kB buffer, so one non-blocking write delivers it whole.
const PHOTO = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'images', 'train', 'chelsea.jpg'));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The write end of `fifo` if a decode has it open for reading (blocked or reading), else null. */
function readerWaiting(fifo: string): number | null {
  try {
    return fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENXIO') return null;
    throw e;
  }
}

async function countConcurrency(workers: number, images: number): Promise<{ peak: number; fed: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-decode-'));
  const files = Array.from({ length: images }, (_, i) => `img${String(i).padStart(2, '0')}.jpg`);
  execFileSync('mkfifo', files.map((f) => path.join(dir, f)));
  const loader = new SoCoLoader({
    root: dir, files, proposals: null, batchSize: images, seed: 0, prefetch: 1, workers,
    geometry: { ...PAPER_GEOMETRY, v1Size: 64, v2Size: 64, v3Size: 32 }, log: () => undefined,
  });
  const waiting = new Map<string, number>();  // reader present, nothing written yet
  const done = new Set<string>();
  let peak = 0;
  const poll = (): void => {
    for (const f of files) {
      if (waiting.has(f) || done.has(f)) continue;
      const fd = readerWaiting(path.join(dir, f));
      if (fd !== null) waiting.set(f, fd);
    }
    peak = Math.max(peak, waiting.size);
  };
  const batch = loader.hostBatches(0).next();
  try {
    // Nothing fed yet: the decodes in flight are exactly the blocked readers.
    for (let i = 0; waiting.size < workers && i < 3000; i++) { poll(); await sleep(10); }
    assert.equal(waiting.size, workers, `${waiting.size} images decoding at once with workers ${workers}`);
    for (let i = 0; i < 20; i++) { poll(); await sleep(10); }
    assert.equal(peak, workers, `a ${workers + 1}th decode started while ${workers} were in flight`);
    // Feed them one at a time; each finished decode lets exactly one more start.
    while (done.size < images) {
      poll();
      const next = waiting.entries().next();
      if (next.done) { await sleep(5); continue; }
      const [f, fd] = next.value;
      assert.equal(fs.writeSync(fd, PHOTO), PHOTO.length);
      fs.closeSync(fd);
      waiting.delete(f);
      done.add(f);
    }
    const b = await batch;
    assert.equal(b.done, false);
    assert.equal(b.value?.samples.length, images);
    b.value?.v1?.dispose();
    return { peak, fed: done.size };
  } finally {
    for (const fd of waiting.values()) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('loader workers = images decoded at once', function () {
  this.timeout(120000);
  let before = 4;
  beforeEach(() => { before = decodeThreads(); });
  afterEach(() => { setDecodeThreads(before); });

  it('workers 6 decodes 6 images at once (more than libuv\'s 4 threads), never 7', async () => {
    const r = await countConcurrency(6, 14);
    assert.equal(r.peak, 6);
    assert.equal(r.fed, 14);
    assert.equal(decodeThreads(), 6);
  });

  it('workers 2 decodes 2 at once', async () => {
    assert.equal((await countConcurrency(2, 5)).peak, 2);
  });

  it('workers outside [1, 1024] is an error naming the value', () => {
    for (const w of [0, 1.5, 2000]) {
      assert.throws(() => new SoCoLoader({ root: '.', files: ['a.jpg'], proposals: null, batchSize: 1, seed: 0, workers: w }),
        new RegExp(`workers must be an integer in \\[1, 1024\\], got ${w}`));
    }
  });
});
