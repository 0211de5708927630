// The authors' proposal files as they are: keyed by the image's file name without extension
// ('n01440764_10026', train_ratio3size0308post.json) or with it, over an ImageNet-style tree of class
// folders. Imported as a user would (`soco-train proposals import`), they serve the training
// preflight, the loader, eval-retrieval and the views sheets; a name two images share is reported,
// never guessed.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readImageSize } from '../lib/data/image';
import { listImageFiles } from '../lib/data/image_files';
import { SoCoLoader, disposeBatch } from '../lib/data/loader';
import { ProposalLookup } from '../lib/data/proposal_keys';
import { ProposalRecord, RecordStatus } from '../lib/data/proposal_store';
import { fromAuthorsRects } from '../lib/data/selective_search';
import { PAPER_GEOMETRY } from '../lib/data/views_geometry';
import { writeViewSheets } from '../lib/cli/views';
import { resolveConfig } from '../lib/train/config';
import { createBatchSource, openProposals } from '../lib/train/data_source';
import { evalRetrieval } from '../lib/train/eval_retrieval';

const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
const BIN = path.join(ROOT, 'bin', 'soco-train.js');

/** A store stand-in holding these keys. */
function keys(...ks: string[]): { has(k: string): boolean; get(k: string): ProposalRecord | undefined } {
  const rec = (key: string): ProposalRecord => ({ key, status: RecordStatus.Ok, boxes: new Int32Array(4), width: 0, height: 0, rawCount: 1, uniqueCount: 1, filterStage: 0, millis: 0 });
  return { has: (k) => ks.includes(k), get: (k) => (ks.includes(k) ? rec(k) : undefined) };
}

describe('proposal keys: relative path, file name, or file name without extension', function () {
  it('resolves path before file name before stem, and reports names two images share', () => {
    const files = ['n01/n01_1.JPEG', 'n01/n01_2.JPEG', 'n02/n02_1.JPEG', 'a/x.jpg', 'b/x.jpg', 'c/y.jpg', 'c/y.png', 'top.jpg'];
    const stems = new ProposalLookup(keys('n01_1', 'n01_2', 'n02_1', 'x', 'y', 'top'), files);
    assert.deepEqual(stems.resolve('n01/n01_1.JPEG'), { key: 'n01_1', form: 'stem' });
    assert.deepEqual(stems.resolve('top.jpg'), { key: 'top', form: 'stem' });
    assert.deepEqual(stems.resolve('a/x.jpg'), { ambiguous: 'stem' });
    assert.equal(stems.get('a/x.jpg'), undefined, 'never a guess');
    assert.equal(stems.get('n02/n02_1.JPEG')?.key, 'n02_1');
    // The same stem in two folders, and in one folder with two extensions.
    assert.deepEqual(stems.ambiguous, ['a/x.jpg', 'b/x.jpg', 'c/y.jpg', 'c/y.png'].map((file) => ({ file, form: 'stem' })));

    const names = new ProposalLookup(keys('n01_1.JPEG', 'x.jpg', 'y.jpg'), files);
    assert.deepEqual(names.resolve('n01/n01_1.JPEG'), { key: 'n01_1.JPEG', form: 'name' });
    assert.deepEqual(names.resolve('c/y.jpg'), { key: 'y.jpg', form: 'name' }, 'y.jpg is the only y.jpg');
    assert.deepEqual(names.ambiguous, [{ file: 'a/x.jpg', form: 'name' }, { file: 'b/x.jpg', form: 'name' }]);

    // A relative path always wins; its name twin elsewhere is still ambiguous.
    const mixed = new ProposalLookup(keys('a/x.jpg', 'x', 'x.jpg', 'n01_2'), files);
    assert.deepEqual(mixed.resolve('a/x.jpg'), { key: 'a/x.jpg', form: 'path' });
    assert.deepEqual(mixed.ambiguous, [{ file: 'b/x.jpg', form: 'name' }]);
    assert.equal(mixed.has('n01/n01_1.JPEG'), false);
    assert.equal(mixed.has('n01/n01_2.JPEG'), true);
  });

  describe('the authors\' JSON over a tree of class folders, imported with the CLI', function () {
    this.timeout(600000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-keys-'));
    const tree = path.join(dir, 'tree');
    const rects = new Map<string, number[][]>();
    const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: ROOT });
    const logs: string[] = [];
    const log = (m: string): void => { logs.push(m); };

    before(async () => {
      // Eight photos in two class folders, with ImageNet's names.
      const photos = listImageFiles(FIXTURES).filter((f) => /\.jpg$/.test(f)).slice(0, 8);
      assert.equal(photos.length, 8);
      for (const [i, photo] of photos.entries()) {
        const cls = i < 4 ? 'n01440764' : 'n01443537';
        const file = path.join(tree, cls, `${cls}_${10026 + i}.JPEG`);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.copyFileSync(path.join(FIXTURES, photo), file);
        const { width: W, height: H } = await readImageSize(file);
        rects.set(`${cls}_${10026 + i}`, [[Math.round(W * 0.1), Math.round(H * 0.1), Math.round(W * 0.5), Math.round(H * 0.6)],
          [Math.round(W * 0.4), Math.round(H * 0.3), Math.round(W * 0.5), Math.round(H * 0.6)]]);
      }
      const write = (file: string, key: (stem: string) => string): void =>
        fs.writeFileSync(file, JSON.stringify(Object.fromEntries([...rects].map(([stem, r]) => [key(stem), r]))));
      write(path.join(dir, 'stems.json'), (s) => s);
      write(path.join(dir, 'names.json'), (s) => `${s}.JPEG`);
      for (const form of ['stems', 'names']) {
        const r = cli('proposals', 'import', '--json', path.join(dir, `${form}.json`), '--out', path.join(dir, `${form}.props`));
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /8 images/);
      }
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    const config = (form: string, presets = 'paper') => resolveConfig({
      presets, overrides: { images: tree, proposals: path.join(dir, `${form}.props`), batchSize: 4, v1Size: 64, v2Size: 64, v3Size: 32, prefetch: 1 },
    }).config;

    it('serves the preflight and the loader in both key forms: every image gets its own boxes', async () => {
      const files = listImageFiles(tree);
      for (const form of ['stems', 'names']) {
        const { store, lookup, coverage, forms } = openProposals(path.join(dir, `${form}.props`), tree, files);
        try {
          assert.equal(coverage, 1);
          assert.deepEqual(forms, form === 'stems' ? { path: 0, name: 0, stem: 8 } : { path: 0, name: 8, stem: 0 });
          for (const f of files) {
            const stem = path.basename(f, '.JPEG');
            assert.deepEqual([...lookup.get(f)!.boxes], [...fromAuthorsRects(rects.get(stem)!)], f);
          }
          const loader = new SoCoLoader({ root: tree, files, proposals: lookup, batchSize: 4, seed: 1, prefetch: 1, geometry: { ...PAPER_GEOMETRY, v1Size: 64, v2Size: 64, v3Size: 32 }, log });
          for await (const b of loader.epoch(0)) disposeBatch(b);
          assert.equal(loader.stats.missingProposals, 0);
        } finally {
          store.close();
        }
        for (const presets of ['paper', 'official']) {
          logs.length = 0;
          const src = await createBatchSource(config(form, presets), 'cpu', log);
          try {
            const it = src.epoch(0, 0);
            const b = (await it.next()).value;
            assert.equal(b.images, 4);
            b.dispose();
            await it.return?.();
          } finally {
            await src.close();
          }
          assert.ok(logs.some((l) => (form === 'stems' ? /keyed by file name without extension/ : /keyed by file name;/).test(l)), logs.join('\n'));
        }
      }
    });

    it('`soco-train train` accepts the imported store (it refused it as "another image set")', () => {
      const r = cli('train', '--images', tree, '--proposals', path.join(dir, 'stems.props'), '--out', path.join(dir, 'run'), '--device', 'cpu',
        '--depth', '18', '--no-head', '--projector-hidden', '32', '--predictor-hidden', '32', '--embed-dim', '16', '--v1-size', '64', '--v2-size', '64',
        '--v3-size', '32', '--batch-size', '2', '--max-iters', '1', '--epochs', '1', '--warmup-epochs', '0', '--prefetch', '1', '--log-every', '1');
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /another image set/);
      assert.ok(fs.existsSync(path.join(dir, 'run', 'last.pth')));
    });

    it('serves eval-retrieval and the views sheets', async () => {
      const r = await evalRetrieval({ images: tree, proposals: path.join(dir, 'names.props'), rounds: 1, k: 2, v1Size: 64, v2Size: 64,
        network: { depth: 18, head: false, projectorHidden: 32, predictorHidden: 32, embedDim: 16 } });
      // A query per proposal found in both views: whole-image fallbacks (no proposals) give none.
      assert.ok(r.random.queries > 0, `${r.random.queries} queries`);
      const out: string[] = [];
      const [l, w] = [console.log, console.warn];
      console.log = (...a: unknown[]) => { out.push(a.join(' ')); };
      console.warn = () => undefined;
      try {
        await writeViewSheets({ images: tree, proposals: path.join(dir, 'stems.props'), out: path.join(dir, 'sheets'), n: 4, perSheet: 4, seed: 0, epoch: 0, layout: 'official', device: 'cpu' });
      } finally {
        [console.log, console.warn] = [l, w];
      }
      assert.match(out[out.length - 1], /views: 4 images; .* 0 without proposals/);
    });

    it('reports names two images share instead of guessing', async () => {
      // The same stem in the other class folder.
      const twin = path.join(tree, 'n01443537', 'n01440764_10026.JPEG');
      fs.copyFileSync(path.join(tree, 'n01440764', 'n01440764_10026.JPEG'), twin);
      try {
        const want = /keyed by file name without extension \(the authors' keys\), and 2 images of --images .* share such a name with another image, so their boxes cannot be told apart: n01440764\/n01440764_10026\.JPEG, n01443537\/n01440764_10026\.JPEG/;
        await assert.rejects(createBatchSource(config('stems'), 'cpu', log), want);
        await assert.rejects(writeViewSheets({ images: tree, proposals: path.join(dir, 'stems.props'), out: path.join(dir, 'sheets2'), n: 1, perSheet: 1, seed: 0, epoch: 0, layout: 'paper', device: 'cpu' }), want);
        await assert.rejects(evalRetrieval({ images: tree, proposals: path.join(dir, 'names.props') }), /keyed by file name, and 2 images/);
      } finally {
        fs.rmSync(twin);
      }
    });
  });
});
