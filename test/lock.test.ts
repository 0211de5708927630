// lib/io/lock: one writer per output. A second writer is refused at once naming the holder; a
// holder killed with SIGKILL leaves a file that the next writer takes over with a note; of several
// writers racing for a dead holder's lock exactly one wins. Then `train` on a folder another run holds.
import { strict as assert } from 'assert';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LockHeldError, acquireLock } from '../lib/io/lock';
import { OUT_LOCK, SoCoTrainer } from '../lib/train/trainer';

const ROOT = path.resolve(__dirname, '..', '..');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');

const children: ChildProcess[] = [];

/** A process that takes `file` and holds it until killed; resolves with its first line ('got ...' or 'refused: ...'). */
function holder(file: string): { child: ChildProcess; first: Promise<string> } {
  const js = `const { acquireLock } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'io', 'lock.js'))});
    try {
      const notes = [];
      acquireLock(process.argv[1], { what: 'the output', command: 'holder', log: (m) => notes.push(m) });
      console.log('got ' + JSON.stringify(notes));
      setInterval(() => {}, 1000);
    } catch (e) { console.log('refused: ' + e.message); process.exit(3); }`;
  const child = spawn(process.execPath, ['-e', js, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const first = new Promise<string>((resolve) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.split('\n')[0]); });
    child.on('exit', () => resolve(out.split('\n')[0]));
  });
  return { child, first };
}

const exited = (c: ChildProcess): Promise<void> => new Promise((resolve) => { if (c.exitCode !== null || c.signalCode !== null) resolve(); else c.on('exit', () => resolve()); });

describe('one writer per output (lib/io/lock)', function () {
  this.timeout(300000);
  let tmp = '';
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-lock-test-')); });
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a second writer at once naming the holder; release removes the file', () => {
    const file = path.join(tmp, 'x.lock');
    const a = acquireLock(file, { what: '--out x', command: 'proposals generate' });
    assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).pid, process.pid);
    assert.throws(() => acquireLock(file, { what: '--out x', command: 'proposals import' }), (e: Error) => e instanceof LockHeldError &&
      e.message === `--out x is being written by pid ${process.pid} on ${os.hostname()} (proposals generate, since ${a.owner.since}): ` +
        `one writer at a time; this process: close the other writer first (lock file ${file})`);
    a.release();
    assert.ok(!fs.existsSync(file));
    const b = acquireLock(file, { what: '--out x', command: 'again' });
    b.release();
    b.release();
  });

  it('a holder killed with SIGKILL blocks nobody: the next writer takes over with a note; racing writers, one wins', async () => {
    const file = path.join(tmp, 'x.lock');
    const first = holder(file);
    assert.match(await first.first, /^got \[\]/);
    const refused = holder(file);
    assert.match(await refused.first, new RegExp(`^refused: the output is being written by pid ${first.child.pid} on .* \\(holder, since `));
    first.child.kill('SIGKILL');
    await exited(first.child);
    assert.ok(fs.existsSync(file), 'a killed holder cannot remove its file');
    // four writers at once for the dead holder's lock
    const racers = Array.from({ length: 4 }, () => holder(file));
    const lines = await Promise.all(racers.map((r) => r.first));
    const won = lines.filter((l) => l.startsWith('got'));
    assert.equal(won.length, 1, lines.join('\n'));
    assert.match(won[0], new RegExp(`took over the lock of pid ${first.child.pid} on .* \\(holder, since .*\\), which is gone`));
    const winner = racers[lines.indexOf(won[0])].child;
    for (const l of lines.filter((x) => !x.startsWith('got'))) assert.match(l, new RegExp(`being written by pid ${winner.pid} `));
    winner.kill('SIGKILL');
    await Promise.all(racers.map((r) => exited(r.child)));
  });

  it('train: a second run on the same --out is refused before any work, naming the first', async () => {
    const out = path.join(tmp, 'run');
    const t = new SoCoTrainer({ images: TRAIN, out, proposalSource: 'whole-image', device: 'cpu' });
    t.preflight();
    try {
      assert.ok(fs.existsSync(path.join(out, OUT_LOCK)));
      const js = `require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'cli', 'main.js'))}).main(process.argv).catch((e) => { console.error('soco-train: ' + e.message); process.exit(1); });`;
      const child = spawn(process.execPath, ['-e', js, 'x', 'train', '--images', TRAIN, '--out', out, '--proposal-source', 'whole-image', '--device', 'cpu'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      assert.equal(code, 1, err);
      assert.match(err, new RegExp(`soco-train: --out .*run is being written by pid ${process.pid} on .* \\(train, since .*\\): one writer at a time`));
    } finally {
      await t.close();
    }
    assert.ok(!fs.existsSync(path.join(out, OUT_LOCK)), 'close() releases the lock');
    const again = new SoCoTrainer({ images: TRAIN, out, proposalSource: 'whole-image', device: 'cpu' });
    again.preflight();
    await again.close();
  });
});
