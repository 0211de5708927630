// Proposal store: format round trips, torn-tail recovery, index rebuild, the authors' JSON, and
// the `proposals` CLI end to end on the real fixture photos (interrupt + resume).
import { SYSTEM_PYTHON } from './reference/python';
import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  ProposalStore, ProposalStoreWriter, RecordStatus, readAuthorsJson, writeAuthorsJson,
} from '../lib/data/proposal_store';

const ROOT = path.resolve(__dirname, '..', '..');
const FIX = path.join(ROOT, 'test', 'fixtures');

describe('proposal store', function () {
  this.timeout(120000);
  let tmp = '';
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-store-test-')); });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const rec = (i: number) => ({
    boxes: Int32Array.from([i % 7, i % 5, 40 + (i % 300), 50 + (i % 200), 0, 0, 500, 375]),
    width: 500, height: 375, rawCount: 9, uniqueCount: 7, filterStage: 0, millis: 12.5,
  });

  it('stores, indexes and reads back records (boxes, sizes, failures, utf-8 keys)', () => {
    const f = path.join(tmp, 's.ssp');
    const w = ProposalStoreWriter.open(f, { scale: 500 });
    w.append('n01440764/n01440764_10026.JPEG', rec(1));
    w.append('dir/é ü/x.jpg', rec(2));
    w.appendFailure('bad/corrupt.jpg', 'IMAGE_CORRUPT: bad Huffman code');
    w.append('empty.png', { ...rec(3), boxes: [] });
    w.append('n0_7.JPEG', rec(4));
    w.close();
    const s = ProposalStore.open(f);
    try {
      assert.equal(s.size, 5);
      assert.deepEqual(s.meta, { scale: 500 });
      const r = s.get('n01440764/n01440764_10026.JPEG')!;
      assert.deepEqual(r.boxes, rec(1).boxes);
      assert.equal(r.width, 500); assert.equal(r.height, 375); assert.equal(r.rawCount, 9); assert.equal(r.millis, 12.5);
      assert.deepEqual(s.get('dir/é ü/x.jpg')!.boxes, rec(2).boxes);
      const bad = s.get('bad/corrupt.jpg')!;
      assert.equal(bad.status, RecordStatus.Failed);
      assert.equal(bad.reason, 'IMAGE_CORRUPT: bad Huffman code');
      assert.equal(s.get('empty.png')!.boxes.length, 0);
      assert.equal(s.get('missing.jpg'), undefined);
      // the authors' JSON is keyed by basename: lookups by relative path fall back to it
      assert.deepEqual(s.get('train/n0/n0_7.JPEG')!.boxes, rec(4).boxes);
      assert.equal(s.get('train/n01440764_10026.JPEG'), undefined);
      assert.deepEqual([...s.entries()].map((e) => e.key), ['n01440764/n01440764_10026.JPEG', 'dir/é ü/x.jpg', 'bad/corrupt.jpg', 'empty.png', 'n0_7.JPEG']);
    } finally { s.close(); }
  });

  it('survives a torn append and a stale index; later records supersede earlier ones', () => {
    const f = path.join(tmp, 's.ssp');
    let w = ProposalStoreWriter.open(f, { scale: 500 });
    for (let i = 0; i < 100; i++) w.append(`img${i}.jpg`, rec(i));
    w.close();
    const good = fs.statSync(f).size;
    // an interrupted write: half a record at the end, and an index that no longer matches
    const fd = fs.openSync(f, 'a');
    fs.writeSync(fd, fs.readFileSync(f).subarray(good - 40, good - 10));
    fs.closeSync(fd);
    let s = ProposalStore.open(f);  // reader: index rebuilt over the valid prefix
    assert.equal(s.size, 100);
    assert.deepEqual(s.get('img99.jpg')!.boxes, rec(99).boxes);
    s.close();
    w = ProposalStoreWriter.open(f, { scale: 500 });  // writer: cuts the torn tail, resumes
    assert.equal(w.truncatedBytes, 30);
    assert.ok(w.has('img42.jpg') && !w.has('img100.jpg'));
    assert.equal(w.count, 100);
    w.append('img100.jpg', rec(100));
    w.append('img5.jpg', rec(500));  // re-run of an image: the newer record wins
    w.close();
    assert.throws(() => ProposalStoreWriter.open(f, { scale: 300 }), /scale=500, not 300/);
    s = ProposalStore.open(f);
    try {
      assert.equal(s.size, 101);
      assert.deepEqual(s.get('img5.jpg')!.boxes, rec(500).boxes);
      assert.equal([...s.entries()].length, 101);
    } finally { s.close(); }
    fs.writeFileSync(path.join(tmp, 'junk'), 'not a store');
    assert.throws(() => ProposalStore.open(path.join(tmp, 'junk')), /not a soco-train proposal store/);
  });

  // How fast it opens and looks up is measured by `npm run bench -- selective-search`
  // (proposal-store-open-1.28M), not asserted here.
  it('a 200k-image store: random lookups return their records', () => {
    const f = path.join(tmp, 'big.ssp');
    const N = 200_000;
    const w = ProposalStoreWriter.open(f, {});
    for (let i = 0; i < N; i++) w.append(`n${String(i % 1000).padStart(8, '0')}/n_${i}.JPEG`, rec(i));
    w.close();
    const s = ProposalStore.open(f);
    try {
      assert.equal(s.size, N);
      for (let k = 0; k < 10000; k++) {
        const i = (k * 7919) % N;
        assert.deepEqual(s.get(`n${String(i % 1000).padStart(8, '0')}/n_${i}.JPEG`)!.boxes, rec(i).boxes);
      }
    } finally { s.close(); }
  });

  it("round-trips the authors' JSON ([x, y, w, h], w one pixel short), streaming", async () => {
    const f = path.join(tmp, 's.ssp');
    const w = ProposalStoreWriter.open(f, {});
    w.append('a/x.JPEG', { ...rec(0), boxes: [0, 0, 10, 20, 3, 4, 5, 6] });
    w.append('b/y "q".JPEG', { ...rec(0), boxes: [] });
    w.appendFailure('c/z.JPEG', 'IMAGE_EMPTY: empty file');
    w.close();
    const s = ProposalStore.open(f);
    const json = path.join(tmp, 'p.json');
    assert.equal(await writeAuthorsJson(s, json, { basename: true }), 2);
    s.close();
    assert.deepEqual(JSON.parse(fs.readFileSync(json, 'utf8')), { 'x.JPEG': [[0, 0, 9, 19], [3, 4, 1, 1]], 'y "q".JPEG': [] });
    const back: [string, number[][]][] = [];
    for await (const e of readAuthorsJson(json)) back.push(e);
    assert.deepEqual(back, [['x.JPEG', [[0, 0, 9, 19], [3, 4, 1, 1]]], ['y "q".JPEG', []]]);
    fs.writeFileSync(json, '{"a": [[1, 2, 3]');
    await assert.rejects(async () => { for await (const _ of readAuthorsJson(json)) void _; }, /unexpected end of file/);
  });

  describe('proposals CLI', () => {
    const runner = (): string => {
      const js = path.join(tmp, 'cli.js');
      fs.writeFileSync(js, `const { Command } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'commander'))});
const { registerProposalsCommands } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'cli', 'proposals.js'))});
const p = new Command('soco-train'); registerProposalsCommands(p);
p.parseAsync(process.argv).catch((e) => { console.error('soco-train: ' + e.message); process.exit(1); });`);
      return js;
    };
    const cli = (js: string, args: string[]) => spawnSync(process.execPath, [js, 'proposals', ...args], { encoding: 'utf8' });

    it('generates, resumes after Ctrl-C without redoing images, records failures, exports, imports, shows', async () => {
      const js = runner();
      const images = path.join(tmp, 'imgs');
      // real photos plus unreadable (corrupt, empty, not an image) and odd (tiny, palette) files, in a tree like ImageNet's
      fs.mkdirSync(path.join(images, 'a'), { recursive: true });
      fs.mkdirSync(path.join(images, 'b'), { recursive: true });
      for (const f of fs.readdirSync(path.join(FIX, 'images', 'train'))) fs.copyFileSync(path.join(FIX, 'images', 'train', f), path.join(images, 'a', f));
      for (const f of ['corrupt.jpg', 'empty.jpg', 'text.jpg', 'small.jpg', 'palette.png']) fs.copyFileSync(path.join(FIX, 'bad', f), path.join(images, 'b', f));
      const total = fs.readdirSync(path.join(images, 'a')).length + 5;
      const store = path.join(tmp, 'p.ssp');

      // first run: interrupted with SIGINT once the first records are on disk
      const child = spawn(process.execPath, [js, 'proposals', 'generate', '--images', images, '--out', store, '--workers', '2', '--preset', 'official'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const t0 = Date.now();
      while (!(fs.existsSync(store) && fs.statSync(store).size > 1000) && Date.now() - t0 < 30000) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGINT');
      const code = await new Promise<number | null>((r) => child.on('exit', r));
      assert.match(err, /interrupted/);
      assert.equal(code, 130, err);
      const partial = ProposalStore.open(store);
      const first = partial.size;
      partial.close();
      assert.ok(first > 0 && first < total, `first run stored ${first} of ${total}`);

      const again = cli(js, ['generate', '--images', images, '--out', store, '--workers', '2', '--preset', 'official']);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, new RegExp(`${first} already in`));
      assert.match(again.stdout, new RegExp(`${total} images, ${total - 3} with proposals, 3 failed`));
      assert.match(again.stdout, /IMAGE_(CORRUPT|TRUNCATED|EMPTY|UNSUPPORTED)/);

      // same boxes as an uninterrupted run
      const fresh = path.join(tmp, 'fresh.ssp');
      assert.equal(cli(js, ['generate', '--images', images, '--out', fresh, '--workers', '1', '--preset', 'official']).status, 0);
      const a = ProposalStore.open(store), b = ProposalStore.open(fresh);
      try {
        for (const r of b.entries()) assert.deepEqual(a.get(r.key)!.boxes, r.boxes, r.key);
      } finally { a.close(); b.close(); }

      const json = path.join(tmp, 'p.json');
      const ex = cli(js, ['export', '--store', store, '--json', json]);
      assert.equal(ex.status, 0, ex.stderr);
      const obj = JSON.parse(fs.readFileSync(json, 'utf8')) as Record<string, number[][]>;
      assert.equal(Object.keys(obj).length, total - 3);
      const imported = path.join(tmp, 'imp.ssp');
      assert.equal(cli(js, ['import', '--json', json, '--out', imported]).status, 0);
      const c = ProposalStore.open(imported), d = ProposalStore.open(store);
      try {
        for (const k of Object.keys(obj)) assert.deepEqual(c.get(k)!.boxes, d.get(k)!.boxes, k);
      } finally { c.close(); d.close(); }

      const out = path.join(tmp, 'show');
      const sh = cli(js, ['show', '--store', store, '--images', images, '--n', '2', '--out-dir', out]);
      assert.equal(sh.status, 0, sh.stderr);
      const pngs = fs.readdirSync(out).sort();
      assert.equal(pngs.length, 4);
      const check = spawnSync(SYSTEM_PYTHON, ['-c', `import sys; from PIL import Image
for f in sys.argv[1:]:
    im = Image.open(f); im.load(); print(im.size[0], im.size[1], im.mode)`, ...pngs.map((p) => path.join(out, p))], { encoding: 'utf8' });
      assert.equal(check.status, 0, check.stderr);
      assert.ok(check.stdout.trim().split('\n').every((l) => / RGB$/.test(l)), check.stdout);

      const bad = cli(js, ['generate', '--images', path.join(tmp, 'nope'), '--out', path.join(tmp, 'x.ssp')]);
      assert.notEqual(bad.status, 0);
      assert.match(bad.stderr, /not a directory/);
    });
  });
});
