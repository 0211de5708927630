// Proposal store: format round trips, torn-tail recovery, index rebuild, damaged records (found,
// named, refused or skipped, repaired without losing a good record), the authors' JSON and its
// checked import, and the `proposals` CLI end to end on the real fixture photos (interrupt + resume).
import { SYSTEM_PYTHON } from './reference/python';
import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  DamagedStoreError, ProposalStore, ProposalStoreWriter, RecordStatus, openVerified, readAuthorsJson, writeAuthorsJson,
} from '../lib/data/proposal_store';
import { importJson } from '../lib/cli/proposals';
import { listImageFiles } from '../lib/data/image_files';

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
      // keys are exact; an image finds a file-name key through ProposalLookup (test/proposal_keys.test.ts)
      assert.equal(s.get('train/n0/n0_7.JPEG'), undefined);
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
    // an interrupted write: the first 30 bytes of a record at the end, and an index that no longer matches
    const last = 32 + 'img99.jpg'.length + 2 * 8 + 4;
    const fd = fs.openSync(f, 'a');
    fs.writeSync(fd, fs.readFileSync(f).subarray(good - last, good - last + 30));
    fs.closeSync(fd);
    let s = ProposalStore.open(f);  // reader: index rebuilt over the valid prefix
    assert.equal(s.size, 100);
    assert.deepEqual(s.get('img99.jpg')!.boxes, rec(99).boxes);
    s.close();
    w = ProposalStoreWriter.open(f, { scale: 500 });  // writer: cuts the torn tail, resumes
    assert.equal(w.tornBytes, 30);
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
    fs.writeFileSync(json, '{"a": [[1, 2, 3, 4]');
    await assert.rejects(async () => { for await (const _ of readAuthorsJson(json)) void _; }, /unexpected end of file/);
  });

  /** [key, first byte, end] of every record of an intact store, walking the record lengths. */
  const layout = (f: string): { key: string; start: number; end: number }[] => {
    const b = fs.readFileSync(f);
    const out = [];
    for (let o = 12 + b.readUInt32LE(8); o < b.length; o += b.readUInt32LE(o + 4)) {
      out.push({ key: b.toString('utf8', o + 32, o + 32 + b.readUInt16LE(o + 8)), start: o, end: o + b.readUInt32LE(o + 4) });
    }
    return out;
  };
  const writeStore = (f: string, n: number): void => {
    const w = ProposalStoreWriter.open(f, { scale: 500 });
    for (let i = 0; i < n; i++) {
      if (i % 23 === 5) w.appendFailure(`d${i % 4}/img${i}.jpg`, 'IMAGE_CORRUPT: bad Huffman code');
      else w.append(`d${i % 4}/img${i}.jpg`, { ...rec(i), boxes: rec(i).boxes.subarray(0, 4 * (1 + (i % 2))) });
    }
    w.close();
  };
  const flip = (f: string, at: number, n: number): void => {
    const fd = fs.openSync(f, 'r+');
    const b = Buffer.alloc(n);
    fs.readSync(fd, b, 0, n, at);
    for (let i = 0; i < n; i++) b[i] ^= 0xa5;
    fs.writeSync(fd, b, 0, n, at);
    fs.closeSync(fd);
  };

  it('verify names each damaged record; readers refuse it, or leave it out when asked; nothing else is lost', async () => {
    const f = path.join(tmp, 's.ssp');
    writeStore(f, 300);
    const recs = layout(f);
    const before = ProposalStore.open(f);
    const orig = new Map([...before.entries()].map((r) => [r.key, r]));
    before.close();
    flip(f, recs[100].end - 12, 8);  // the boxes (and CRC) of record 100: its header still names it
    flip(f, recs[200].start + 2, 8);  // magic, length and key length of record 200: unnamed
    const s = ProposalStore.open(f);
    try {
      const c = s.verify();
      assert.equal(c.records, 298);
      assert.equal(c.tornBytes, 0);
      assert.deepEqual(c.damaged.map((d) => [d.offset, d.end, d.key]), [
        [recs[100].start, recs[100].end, recs[100].key], [recs[200].start, recs[200].end, null]]);
      assert.match(c.damaged[0].why, /checksum mismatch/);
      // the index was built before the damage: a lookup reaches the record and refuses it
      assert.throws(() => s.get(recs[100].key), (e: Error) => e instanceof DamagedStoreError &&
        e.message.includes(`offset ${recs[100].start}`) && e.message.includes(`image ${recs[100].key}`) && /proposals generate/.test(e.message));
      assert.throws(() => [...s.entries()], DamagedStoreError);
      s.skipDamaged = true;
      assert.equal(s.get(recs[100].key), undefined);
      const left = [...s.entries()];
      assert.deepEqual(left.map((r) => r.key).sort(), [...orig.keys()].filter((k) => k !== recs[100].key && k !== recs[200].key).sort());
      for (const r of left) assert.deepEqual(r, orig.get(r.key));
    } finally { s.close(); }
    const lines: string[] = [];
    assert.throws(() => openVerified(f, { skipDamaged: false, skipFlag: '--skip-damaged', log: (m) => lines.push(m) }),
      /2 damaged records:\n  offset \d+ \(\d+ bytes\), image d0\/img100\.jpg: checksum mismatch\n  offset \d+ \(\d+ bytes\), image unknown[^]*--scale 500[^]*--skip-damaged/);
    const v = openVerified(f, { skipDamaged: true, skipFlag: '--skip-damaged', log: (m) => lines.push(m) });
    const json = path.join(tmp, 'out.json');
    const n = await writeAuthorsJson(v, json);
    v.close();
    assert.match(lines.join('\n'), /skipped 2 damaged records \(--skip-damaged\)/);
    assert.equal(n, [...orig.values()].filter((r) => r.status === RecordStatus.Ok).length - 2);

    // the writer keeps the 298 good records (rewriting the store without the damage); the two images are redone
    const w = ProposalStoreWriter.open(f, { scale: 500 });
    assert.deepEqual(w.dropped.map((d) => d.offset), [recs[100].start, recs[200].start]);
    assert.equal(w.count, 298);
    assert.ok(!w.has(recs[100].key) && !w.has(recs[200].key) && w.has(recs[101].key));
    for (const k of [recs[100].key, recs[200].key]) {
      const o = orig.get(k)!;
      w.append(k, { ...o, boxes: o.boxes });
    }
    w.close();
    const r = ProposalStore.open(f);
    try {
      assert.deepEqual(r.verify().damaged, []);
      assert.equal(r.size, 300);
      for (const [k, o] of orig) assert.deepEqual(r.get(k), o);
    } finally { r.close(); }
    assert.deepEqual(fs.readdirSync(tmp).sort(), ['out.json', 's.ssp', 's.ssp.idx']);
  });

  it('random damage costs only the records it touches (100 trials, readers and the writer)', () => {
    const f = path.join(tmp, 'base.ssp');
    writeStore(f, 150);
    const recs = layout(f);
    const intact = fs.readFileSync(f);
    const orig = ProposalStore.open(f);
    const want = new Map([...orig.entries()].map((r) => [r.key, r]));
    orig.close();
    const dataStart = recs[0].start;
    let seed = 12345;
    const rnd = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
    const g = path.join(tmp, 'damaged.ssp');
    for (let trial = 0; trial < 100; trial++) {
      const b = Buffer.from(intact);
      const hits: [number, number][] = [];
      for (let k = 1 + rnd(3); k > 0; k--) {
        const at = dataStart + rnd(b.length - dataStart), len = Math.min(1 + rnd(16), b.length - at);
        for (let i = 0; i < len; i++) b[at + i] ^= 1 + rnd(255);
        hits.push([at, at + len]);
      }
      const touched = new Set(recs.filter((r) => hits.some(([a, e]) => a < r.end && e > r.start)).map((r) => r.key));
      fs.writeFileSync(g, b);
      fs.rmSync(`${g}.idx`, { force: true });
      const s = ProposalStore.open(g);
      const c = s.verify();
      s.skipDamaged = true;
      const got = new Map([...s.entries()].map((r) => [r.key, r]));
      s.close();
      const ctx = `trial ${trial}: damage at ${JSON.stringify(hits)}`;
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].filter((k) => !touched.has(k)).sort(), ctx);
      for (const [k, r] of got) assert.deepEqual(r, want.get(k), ctx);
      // every touched record lies in a reported damaged stretch or in the unfinished tail
      for (const r of recs.filter((x) => touched.has(x.key))) {
        assert.ok(c.damaged.some((d) => d.offset <= r.start && r.start < d.end) || (c.tornBytes > 0 && r.start >= b.length - c.tornBytes), `${ctx}: ${r.key}`);
      }
      const w = ProposalStoreWriter.open(g, { scale: 500 });
      assert.equal(w.count, got.size, ctx);
      w.close();
      const again = ProposalStore.open(g);
      const after = again.verify();
      assert.deepEqual([after.damaged.length, after.tornBytes, after.records], [0, 0, got.size], ctx);
      again.close();
    }
  });

  it('verify rebuilds an index that fails its checksum', () => {
    const f = path.join(tmp, 's.ssp');
    writeStore(f, 50);
    flip(`${f}.idx`, 32 + 16 * 7 + 3, 6);
    const s = ProposalStore.open(f);
    try {
      assert.equal(s.verify().index, 'rebuilt');
      assert.equal(s.size, 50);
      for (let i = 0; i < 50; i++) assert.ok(s.get(`d${i % 4}/img${i}.jpg`), `img${i}`);
      assert.equal(s.verify().index, 'ok');
    } finally { s.close(); }
  });

  it("import checks every number on its text (JSON path, original text) and leaves nothing behind", async () => {
    const json = path.join(tmp, 'p.json');
    const out = path.join(tmp, 'p.ssp');
    const cases: [string, RegExp][] = [
      ['{"n0/a.JPEG": [[1, 2, 3, 4], [4294967296, 0, 1, 1]]}', /image "n0\/a\.JPEG" box 1 x \(JSON path \$\["n0\/a\.JPEG"\]\[1\]\[0\]\): 4294967296 is beyond the store's range/],
      ['{"a": [[0, 1e30, 1, 1]]}', /box 0 y \(JSON path \$\["a"\]\[0\]\[1\]\): 1e30 is beyond/],
      ['{"a": [[0, 0, 1e10, 1]]}', /box 0 w .*: 1e10 is beyond/],
      ['{"a": [[0, 0, 1, 1]], "b": [[-1, 0, 1, 1]]}', /image "b" box 0 x .*: -1 is negative/],
      ['{"a": [[0, 0, 1.5, 1]]}', /box 0 w .*: 1\.5 is not a whole pixel/],
      ['{"a": [[0, 0, 1, 1e400]]}', /box 0 h .*: 1e400 is not a finite number/],
      ['{"a": [[0, 0, 1-2, 1]]}', /box 0 w .*: 1-2 is not a number/],
      ['{"a": [[0, NaN, 1, 1]]}', /box 0 y .*: expected a number, got N/],
      ['{"a": [[0, null, 1, 1]]}', /box 0 y .*: expected a number, got n/],
      ['{"a": [[1, 2, 3]]}', /box 0 \(JSON path \$\["a"\]\[0\]\): \[1, 2, 3\] has 3 numbers/],
      ['{"a": [[60000, 0, 6000, 1]]}', /box 0 .*: x 60000 \+ w 6000 \+ 1 is beyond/],
      ['{"a": [[0, 0, 1, 1]], "b": [[0, 0, 1, 1]', /unexpected end of file/],
      ['{}', /no images in it/],
      ['[1, 2]', /expected \{/],
    ];
    for (const [text, re] of cases) {
      fs.writeFileSync(json, text);
      await assert.rejects(importJson(json, out, () => undefined), (e: Error) => { assert.match(e.message, re, text); return true; });
      assert.deepEqual(fs.readdirSync(tmp), ['p.json'], text);
    }
    fs.writeFileSync(json, '{"a": [[0, 0, 65533, 9], [0, 0, 65533, 9]], "b": []}');
    assert.equal(await importJson(json, out, () => undefined), 2);
    const s = ProposalStore.open(out);
    try {
      assert.deepEqual([...s.get('a')!.boxes], [0, 0, 65534, 10]);
      assert.equal(s.get('b')!.boxes.length, 0);
    } finally { s.close(); }
    assert.deepEqual(fs.readdirSync(tmp).sort(), ['p.json', 'p.ssp', 'p.ssp.idx']);
    await assert.rejects(importJson(json, out, () => undefined), /exists; import writes a new store/);
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

    it('verify lists damage; export/show refuse it or skip it; generate repairs it; export in image order; the traps', () => {
      const js = runner();
      const images = path.join(tmp, 'imgs');
      // 'a-b' sorts before 'a/' as a string but after 'a' as a folder: export must follow the folders
      const photos = fs.readdirSync(path.join(FIX, 'images', 'train')).sort();
      for (const [dir, some] of [['a', photos.slice(0, 3)], ['a-b', photos.slice(3, 5)]] as const) {
        fs.mkdirSync(path.join(images, dir), { recursive: true });
        for (const f of some) fs.copyFileSync(path.join(FIX, 'images', 'train', f), path.join(images, dir, f));
      }
      fs.mkdirSync(path.join(images, 'b'));
      for (const f of ['corrupt.jpg', 'empty.jpg']) fs.copyFileSync(path.join(FIX, 'bad', f), path.join(images, 'b', f));
      const settings = ['--max-side', '128', '--preset', 'official'];
      const store = path.join(tmp, 'p.ssp');

      const empty = path.join(tmp, 'empty');
      fs.mkdirSync(path.join(empty, 'sub'), { recursive: true });
      const none = cli(js, ['generate', '--images', empty, '--out', path.join(tmp, 'none.ssp')]);
      assert.equal(none.status, 1);
      assert.match(none.stderr, /--images .*empty: no \.jpg\/\.jpeg\/\.png\/\.webp files in it/);
      assert.ok(!fs.existsSync(path.join(tmp, 'none.ssp')) && !fs.existsSync(path.join(tmp, 'none.ssp.lock')));

      const gen = cli(js, ['generate', '--images', images, '--out', store, '--workers', '3', ...settings]);
      assert.equal(gen.status, 0, gen.stderr);
      assert.match(gen.stderr, /2 image\(s\) could not be read:\n  b\/corrupt\.jpg: IMAGE_\w+: .*\n  b\/empty\.jpg: IMAGE_EMPTY: .*\nproposals: all 2 listed in .*p\.ssp\.failures\.tsv/);
      assert.deepEqual(fs.readFileSync(`${store}.failures.tsv`, 'utf8').split('\n').map((l) => l.split('\t')[0]), ['b/corrupt.jpg', 'b/empty.jpg', '']);
      const one = path.join(tmp, 'one.ssp');
      assert.equal(cli(js, ['generate', '--images', images, '--out', one, '--workers', '1', ...settings]).status, 0);
      const exported = (s: string, json: string, extra: string[] = []) => cli(js, ['export', '--store', s, '--json', json, ...extra]);
      assert.equal(exported(store, path.join(tmp, 'w3.json')).status, 0);
      assert.equal(exported(one, path.join(tmp, 'w1.json')).status, 0);
      const ref = fs.readFileSync(path.join(tmp, 'w3.json'), 'utf8');
      assert.equal(fs.readFileSync(path.join(tmp, 'w1.json'), 'utf8'), ref, '--workers changes the export');
      const keys = Object.keys(JSON.parse(ref) as object);
      assert.deepEqual(keys, listImageFiles(images).filter((k) => !k.startsWith('b/')));

      const ok = cli(js, ['verify', store]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, /p\.ssp: 7 good records \(7 images\), 0 damaged; index ok/);

      const recs = layout(store);
      const hit = recs.find((r) => r.key === keys[2])!;
      flip(store, hit.end - 12, 8);
      const bad = cli(js, ['verify', store]);
      assert.equal(bad.status, 1);
      assert.match(bad.stdout, new RegExp(`6 good records \\(7 images\\), 1 damaged; index ok.*\\n  damaged: offset ${hit.start} \\(${hit.end - hit.start} bytes\\), image ${keys[2]}: checksum mismatch\\n` +
        'Repair: `soco-train proposals generate --images IMAGE_DIR --out .*p\\.ssp --scale 300 --sigma 0\\.9 --min-size 100 --max-side 128`'));
      const refused = exported(store, path.join(tmp, 'x.json'));
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, new RegExp(`1 damaged record:\\n  offset ${hit.start} .*image ${keys[2]}: checksum mismatch\\nRepair: .*; or pass --skip-damaged`));
      assert.ok(!fs.readdirSync(tmp).some((f) => f.startsWith('x.json')), 'a refused export leaves nothing');
      const skipped = exported(store, path.join(tmp, 'x.json'), ['--skip-damaged']);
      assert.equal(skipped.status, 0, skipped.stderr);
      assert.match(skipped.stderr, /skipped 1 damaged record \(--skip-damaged\)/);
      assert.match(skipped.stdout, /proposals export: 4 images/);
      assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(path.join(tmp, 'x.json'), 'utf8')) as object), keys.filter((k) => k !== keys[2]));

      const shows = (extra: string[]) => cli(js, ['show', '--store', store, '--images', path.join(images, 'a'), '--n', '3', '--out-dir', path.join(tmp, 'show'), ...extra]);
      assert.match(shows([]).stderr, /1 damaged record/);
      const wrong = shows(['--skip-damaged']);
      assert.equal(wrong.status, 0, wrong.stderr);
      assert.match(wrong.stderr, /warning: 3 of the 3 sampled images are not under --images .*imgs\/a \(e\.g\. .*\): is it the folder the store was generated from\?/);

      // generate keeps the good records, drops the damaged one and redoes only that image
      const fix = cli(js, ['generate', '--images', images, '--out', store, '--workers', '2', ...settings]);
      assert.equal(fix.status, 0, fix.stderr);
      assert.match(fix.stderr, new RegExp(`dropped 1 damaged record\\(s\\) of .*p\\.ssp, kept its 6 good ones; the damaged images are redone:\\n  offset ${hit.start} .*image ${keys[2]}`));
      assert.match(fix.stderr, /7 images under .*, 6 already in .*, 1 to do/);
      assert.equal(cli(js, ['verify', store]).status, 0);
      assert.equal(exported(store, path.join(tmp, 'fixed.json')).status, 0);
      assert.equal(fs.readFileSync(path.join(tmp, 'fixed.json'), 'utf8'), ref);
      assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith('p.ssp')).sort(), ['p.ssp', 'p.ssp.failures.tsv', 'p.ssp.idx']);
    });
  });
});
