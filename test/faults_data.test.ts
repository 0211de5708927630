// The fault suite, data side: `proposals generate` and `proposals import` killed with SIGKILL at
// random moments (several times each) and run twice at once. After each fault: nothing that was
// complete is lost (generate: every record written before the kill is intact; import: the store is
// absent or whole), a rerun finishes with the content of an undisturbed run, and no stray files
// remain. Then `train` on a damaged store: refused before iteration 1, or trained without the record.
import { strict as assert } from 'assert';
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DamagedStoreError, ProposalStore, ProposalStoreWriter } from '../lib/data/proposal_store';
import { generate, importJson } from '../lib/cli/proposals';
import { LockHeldError } from '../lib/io/lock';
import { createBatchSource } from '../lib/train/data_source';
import { resolveConfig } from '../lib/train/config';
import { listImageFiles } from '../lib/data/image_files';
import { readImageSize } from '../lib/data/image';
import { Rng } from '../lib/data/views_geometry';

const ROOT = path.resolve(__dirname, '..', '..');
const FIX = path.join(ROOT, 'test', 'fixtures');
const TRAIN = path.join(FIX, 'images', 'train');
const CLI = `require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'cli', 'main.js'))}).main(process.argv).catch((e) => { console.error('soco-train: ' + e.message); process.exit(1); });`;

const start = (args: string[]): ChildProcess => spawn(process.execPath, ['-e', CLI, 'x', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
const run = (args: string[]) => spawnSync(process.execPath, ['-e', CLI, 'x', ...args], { encoding: 'utf8' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const size = (f: string): number => { try { return fs.statSync(f).size; } catch { return -1; } };

/** Waits for the child's end; its exit code, or the signal that ended it, and stderr. */
function ended(c: ChildProcess): Promise<{ code: number | null; signal: string | null; err: string }> {
  let err = '';
  c.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  c.stdout!.resume();
  return new Promise((resolve) => c.on('close', (code, signal) => resolve({ code, signal, err })));
}

/** Every record of a store (key -> the record as JSON); the store must have no damaged record. */
function records(file: string): Map<string, string> {
  const out = new Map<string, string>();
  if (size(file) <= 0) return out;
  const s = ProposalStore.open(file);
  try {
    const c = s.verify();
    assert.deepEqual(c.damaged, [], `${file} has damaged records`);
    for (const r of s.entries()) out.set(r.key, JSON.stringify({ ...r, boxes: [...r.boxes] }));
  } finally { s.close(); }
  return out;
}

describe('fault suite (data): kill -9 and concurrent writers', function () {
  this.timeout(600000);
  let tmp = '';
  let images = '';
  const live: ChildProcess[] = [];
  const settings = ['--max-side', '192', '--workers', '2', '--preset', 'official'];
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-faults-'));
    images = path.join(tmp, 'images');
    // 33 photos in three folders and two unreadable files: a run long enough to be cut in the middle
    for (const dir of ['a', 'b', 'c']) {
      fs.mkdirSync(path.join(images, dir), { recursive: true });
      for (const f of fs.readdirSync(TRAIN)) fs.copyFileSync(path.join(TRAIN, f), path.join(images, dir, f));
    }
    for (const f of ['corrupt.jpg', 'empty.jpg']) fs.copyFileSync(path.join(FIX, 'bad', f), path.join(images, 'b', f));
  });
  afterEach(() => { for (const c of live.splice(0)) c.kill('SIGKILL'); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  /** An undisturbed generate into DIR/p.ssp; returns its export and failure list. */
  const undisturbed = (dir: string): { json: string; failures: string } => {
    fs.mkdirSync(dir);
    const store = path.join(dir, 'p.ssp');
    const g = run(['proposals', 'generate', '--images', images, '--out', store, ...settings]);
    assert.equal(g.status, 0, g.stderr);
    const e = run(['proposals', 'export', '--store', store, '--json', path.join(dir, 'p.json')]);
    assert.equal(e.status, 0, e.stderr);
    return { json: fs.readFileSync(path.join(dir, 'p.json'), 'utf8'), failures: fs.readFileSync(`${store}.failures.tsv`, 'utf8') };
  };

  it('generate: SIGKILL at random moments loses nothing complete; the rerun equals an undisturbed run; no stray files', async () => {
    const ref = undisturbed(path.join(tmp, 'ref'));
    const dir = path.join(tmp, 'killed');
    fs.mkdirSync(dir);
    const store = path.join(dir, 'p.ssp');
    const rng = new Rng(Number(process.env.SOCO_FAULT_SEED ?? 17));
    const kills: string[] = [];
    for (let round = 0; round < 6; round++) {
      const before = records(store);
      const grownFrom = size(store);
      const child = start(['proposals', 'generate', '--images', images, '--out', store, ...settings]);
      live.push(child);
      const result = ended(child);
      let finished = false;
      void result.then(() => { finished = true; });
      // round 0 dies while starting (lock, header); the others once records are being appended
      let delay = Math.floor(rng.next() * 150);
      if (round === 0) delay = 300 + Math.floor(rng.next() * 1500);
      else while (!finished && size(store) <= Math.max(grownFrom, 0)) await sleep(5);
      await sleep(delay);
      child.kill('SIGKILL');
      const r = await result;
      const after = records(store);
      const ctx = `round ${round} (killed ${delay} ms in, ${before.size} -> ${after.size} records)`;
      kills.push(`${ctx}: ${r.signal ?? `exit ${r.code}`}`);
      for (const [k, v] of before) assert.equal(after.get(k), v, `${ctx}: ${k} changed or was lost`);
      if (r.signal !== 'SIGKILL') { assert.equal(r.code, 0, r.err); break; }
    }
    assert.ok(kills.filter((k) => k.endsWith('SIGKILL')).length >= 3, kills.join('\n'));
    const rerun = run(['proposals', 'generate', '--images', images, '--out', store, ...settings]);
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.equal(run(['proposals', 'export', '--store', store, '--json', path.join(dir, 'p.json')]).status, 0);
    assert.equal(fs.readFileSync(path.join(dir, 'p.json'), 'utf8'), ref.json, kills.join('\n'));
    assert.equal(fs.readFileSync(`${store}.failures.tsv`, 'utf8'), ref.failures);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['p.json', 'p.ssp', 'p.ssp.failures.tsv', 'p.ssp.idx'], kills.join('\n'));
  });

  it('generate: two writers at once, one refused naming the other; the store ends as an undisturbed one', async () => {
    const ref = undisturbed(path.join(tmp, 'ref2'));
    const dir = path.join(tmp, 'twice');
    fs.mkdirSync(dir);
    const store = path.join(dir, 'p.ssp');
    const args = ['proposals', 'generate', '--images', images, '--out', store, ...settings];
    const a = start(args), b = start(args);
    live.push(a, b);
    const [ra, rb] = await Promise.all([ended(a), ended(b)]);
    // started together, they overlap unless one was finished before the other looked at the lock
    const refused = [[ra, b], [rb, a]].filter(([r]) => (r as { code: number }).code !== 0);
    assert.ok(refused.length <= 1, `${ra.err}\n${rb.err}`);
    for (const [r, other] of refused) {
      assert.equal((r as { code: number }).code, 1);
      assert.match((r as { err: string }).err, new RegExp(`--out .*p\\.ssp is being written by pid ${(other as ChildProcess).pid} on .* \\(proposals generate, since `));
    }
    // and while one runs, an in-process writer is refused at once
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
    const c = start(args);
    live.push(c);
    const rc = ended(c);
    while (size(store) <= 0) await sleep(5);
    await assert.rejects(generate({ images, out: store, workers: 1, preset: 'official', maxSide: 192, filter: true, quiet: true }),
      (e: Error) => e instanceof LockHeldError && e.message.includes(`being written by pid ${c.pid} `));
    assert.equal((await rc).code, 0);
    assert.equal(run(['proposals', 'export', '--store', store, '--json', path.join(dir, 'p.json')]).status, 0);
    assert.equal(fs.readFileSync(path.join(dir, 'p.json'), 'utf8'), ref.json);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['p.json', 'p.ssp', 'p.ssp.failures.tsv', 'p.ssp.idx']);
  });

  it('import: SIGKILL at random moments leaves no store or the whole one; a rerun equals an undisturbed import; twice at once', async () => {
    const dir = path.join(tmp, 'import');
    fs.mkdirSync(dir);
    const json = path.join(dir, 'p.json');
    const rng = new Rng(Number(process.env.SOCO_FAULT_SEED ?? 17) + 1);
    const obj: Record<string, number[][]> = {};
    for (let i = 0; i < 40000; i++) obj[`n${i % 100}/n_${i}.JPEG`] = Array.from({ length: 6 }, () => [rng.int(300), rng.int(200), 32 + rng.int(150), 32 + rng.int(100)]);
    fs.writeFileSync(json, JSON.stringify(obj));
    const ref = path.join(dir, 'ref.ssp');
    assert.equal(run(['proposals', 'import', '--json', json, '--out', ref]).status, 0);
    const refBytes = fs.readFileSync(ref);
    const out = path.join(dir, 'p.ssp');
    const kills: string[] = [];
    // Until two kills have landed: an import that finished first (a fast or quiet machine) is
    // checked whole and removed, and the next delay is drawn from half the range.
    let maxDelay = 1200;
    for (let round = 0; round < 10 && kills.filter((k) => k.endsWith('SIGKILL')).length < 2; round++) {
      const child = start(['proposals', 'import', '--json', json, '--out', out]);
      live.push(child);
      const result = ended(child);
      let finished = false;
      void result.then(() => { finished = true; });
      while (!finished && !fs.readdirSync(dir).some((f) => f.startsWith('.p.ssp.tmp-'))) await sleep(5);
      const delay = Math.floor(rng.next() * maxDelay);
      await sleep(delay);
      child.kill('SIGKILL');
      const r = await result;
      kills.push(`round ${round}: ${delay} ms after the temp store appeared: ${r.signal ?? `exit ${r.code}`}`);
      if (fs.existsSync(out)) {
        assert.ok(fs.readFileSync(out).equals(refBytes), `${kills.join('\n')}: a partial store under the final name`);
        for (const f of [out, `${out}.idx`]) fs.rmSync(f);
        if (!r.signal) maxDelay /= 2;
      }
    }
    assert.ok(kills.filter((k) => k.endsWith('SIGKILL')).length >= 2, kills.join('\n'));
    const rerun = run(['proposals', 'import', '--json', json, '--out', out]);
    assert.equal(rerun.status, 0, rerun.stderr);
    assert.ok(fs.readFileSync(out).equals(refBytes), kills.join('\n'));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['p.json', 'p.ssp', 'p.ssp.idx', 'ref.ssp', 'ref.ssp.idx'], kills.join('\n'));

    // twice at once: one store, the other refused (locked, or the store already exists)
    const twice = path.join(dir, 'q.ssp');
    const a = start(['proposals', 'import', '--json', json, '--out', twice]), b = start(['proposals', 'import', '--json', json, '--out', twice]);
    live.push(a, b);
    const rs = await Promise.all([ended(a), ended(b)]);
    assert.deepEqual(rs.map((r) => r.code).sort(), [0, 1], rs.map((r) => r.err).join('\n'));
    assert.match(rs.find((r) => r.code === 1)!.err, /is being written by pid \d+ .*\(proposals import|q\.ssp exists; import writes a new store/);
    assert.ok(fs.readFileSync(twice).equals(refBytes));
    await assert.rejects(importJson(json, twice, () => undefined), /exists; import writes a new store/);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('q.ssp')).sort(), ['q.ssp', 'q.ssp.idx']);
  });

  it('train: a damaged store is refused before iteration 1 naming the record; --skip-damaged-proposals trains without it', async () => {
    const dir = path.join(tmp, 'train');
    fs.mkdirSync(dir);
    const store = path.join(dir, 'p.ssp');
    const keys = listImageFiles(TRAIN);
    const w = ProposalStoreWriter.open(store, { format: 'soco-train proposals 1' });
    for (const key of keys) {
      const { width: W, height: H } = await readImageSize(path.join(TRAIN, key));
      w.append(key, { boxes: [0, 0, Math.round(W * 0.6), Math.round(H * 0.6), Math.round(W * 0.3), Math.round(H * 0.3), W, H], width: W, height: H, rawCount: 2, uniqueCount: 2, filterStage: 0, millis: 0 });
    }
    w.close();
    // 8 bytes of the boxes of the third record
    const b = fs.readFileSync(store);
    let o = 12 + b.readUInt32LE(8);
    for (let i = 0; i < 2; i++) o += b.readUInt32LE(o + 4);
    for (let i = 0; i < 8; i++) b[o + b.readUInt32LE(o + 4) - 12 + i] ^= 0x5a;
    fs.writeFileSync(store, b);

    const config = (skip: boolean) => resolveConfig({ overrides: { images: TRAIN, proposals: store, out: path.join(dir, 'run'), skipDamagedProposals: skip, batchSize: 2, v1Size: 64, v2Size: 64, v3Size: 32 } }).config;
    const notes: string[] = [];
    await assert.rejects(createBatchSource(config(false), 'cpu', (m) => notes.push(m)), (e: Error) => e instanceof DamagedStoreError &&
      e.message.includes(`offset ${o} `) && e.message.includes(`image ${keys[2]}: checksum mismatch`) && e.message.includes('--skip-damaged-proposals'));
    const source = await createBatchSource(config(true), 'cpu', (m) => notes.push(m));
    await source.close();
    assert.match(notes.join('\n'), new RegExp(`skipped 1 damaged record \\(--skip-damaged-proposals\\); their images count as having no proposals:\\n  offset ${o} .*image ${keys[2]}`));

    const r = run(['train', '--images', TRAIN, '--proposals', store, '--out', path.join(dir, 'run'), '--device', 'cpu', '--depth', '18', '--batch-size', '2', '--max-iters', '1']);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`soco-train: .*p\\.ssp: 1 damaged record:\\n  offset ${o} .*image ${keys[2]}: checksum mismatch`));
    assert.doesNotMatch(r.stdout, /iter 1\//);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'run')).filter((f) => f !== 'config.json'), [], 'no checkpoint, no lock left');
  });
});
