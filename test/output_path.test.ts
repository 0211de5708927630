// Output paths are checked before any work, by every command that writes (lib/io/output_path.ts):
// a path under /proc made Node's mkdirSync(recursive) spin forever; now each command exits 1 at
// once with the reason. Temporary files of writers killed mid-write are removed by the next run
// (lib/io/temp_files.ts).
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkOutputPath } from '../lib/io/output_path';
import { removeStaleTemps, tempPathFor } from '../lib/io/temp_files';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'soco-train.js');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');

describe('output paths', function () {
  this.timeout(300000);
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-outpath-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuse pseudo file systems and /dev, by type, naming the flag', () => {
    for (const kind of ['dir', 'file'] as const) {
      assert.throws(() => checkOutputPath('/proc/soco-out', { flag: '--out', kind }), /^OutputPathError: --out \/proc\/soco-out: it is on the kernel's proc pseudo file system/);
      assert.throws(() => checkOutputPath('/proc/self/new/deep', { flag: '--out', kind }), /proc pseudo file system/);
      assert.throws(() => checkOutputPath('/sys/kernel/soco', { flag: '--json', kind }), /^OutputPathError: --json \/sys\/kernel\/soco: it is on the kernel's sysfs pseudo file system/);
      assert.throws(() => checkOutputPath('/dev/soco-out', { flag: '--out', kind }), /under \/dev, which holds device files/);
    }
    if (fs.existsSync('/dev/shm')) assert.equal(checkOutputPath('/dev/shm/soco-x/y', { flag: '--out', kind: 'dir' }), '/dev/shm/soco-x/y');
  });

  it('refuse the wrong kind of path, and files in the way', () => {
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    assert.throws(() => checkOutputPath(file, { flag: '--out', kind: 'dir' }), /a-file: it exists and is not a folder/);
    assert.throws(() => checkOutputPath(dir, { flag: '--out', kind: 'file' }), /: it is a folder; give a file name/);
    assert.throws(() => checkOutputPath(path.join(file, 'sub', 'x.pth'), { flag: '--out', kind: 'file' }), /a-file is a file, not a folder/);
    assert.equal(checkOutputPath(path.join(dir, 'new', 'deep'), { flag: '--out', kind: 'dir' }), path.join(dir, 'new', 'deep'));
    assert.equal(checkOutputPath(file, { flag: '--out', kind: 'file' }), file, 'an existing file may be replaced');
    assert.ok(!fs.existsSync(path.join(dir, 'new')), 'the check creates nothing');
  });

  it('refuse a folder the user cannot write', () => {
    const locked = path.join(dir, 'locked');
    fs.mkdirSync(locked, { mode: 0o755 });
    // root may write anywhere: the check runs as 'nobody' then, on a folder root owns.
    const asRoot = process.getuid?.() === 0;
    if (!asRoot) fs.chmodSync(locked, 0o555);
    fs.chmodSync(dir, 0o755);
    const script = `try { require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'io', 'output_path.js'))}).checkOutputPath(${JSON.stringify(path.join(locked, 'run'))}, { flag: '--out', kind: 'dir' }); console.log('ok'); } catch (e) { console.log(e.message); }`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    assert.match(r.stdout, /--out .*locked\/run: .*locked is not writable \(permission denied\)/, r.stderr);
  });

  it('every command that writes exits 1 on --out /proc/... at once, naming it', () => {
    const run = path.join(dir, 'run');
    fs.mkdirSync(run, { recursive: true });
    const store = path.join(dir, 'none.store');
    const cases: string[][] = [
      ['train', '--images', TRAIN, '--proposals', store, '--out', '/proc/soco-run'],
      ['views', '--images', TRAIN, '--proposals', store, '--out', '/proc/soco-views'],
      ['plot', '--run', run, '--out', '/proc/soco-plots'],
      ['export', '--checkpoint', path.join(run, 'last.pth'), '--out', '/proc/soco.pth'],
      ['export', '--checkpoint', path.join(run, 'last.pth'), '--out', path.join(dir, 'ok.pth'), '--config-out', '/proc/soco.yaml'],
      ['proposals', 'generate', '--images', TRAIN, '--out', '/proc/soco.store'],
      ['proposals', 'import', '--json', path.join(dir, 'none.json'), '--out', '/proc/soco.store'],
      ['proposals', 'export', '--store', store, '--json', '/proc/soco.json'],
      ['proposals', 'show', '--store', store, '--images', TRAIN, '--out-dir', '/proc/soco-show'],
      ['demo', '--out', '/proc/soco-demo'],
      ['train', '--images', TRAIN, '--proposals', store, '--out', '/sys/soco-run'],
    ];
    for (const args of cases) {
      // The timeout only stops a hang (the old behaviour) from hanging the suite.
      const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120000 });
      const flag = args[args.findIndex((a) => a.startsWith('/proc/') || a.startsWith('/sys/')) - 1];
      assert.equal(r.signal, null, `${args.join(' ')}: killed by ${r.signal} (hung)`);
      assert.equal(r.status, 1, `${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^soco-train: ${flag} /(proc|sys)/soco[-.\\w]*: it is on the kernel's (proc|sysfs) pseudo file system`), args.join(' '));
    }
  });

  it('stale temporary files: those of dead writers of this host go (with files named after them); live, other hosts\' and foreign ones stay', () => {
    const d = path.join(dir, 'temps');
    fs.mkdirSync(d);
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    const host = os.hostname();
    const staged = (name: string, pid = deadPid, h = host): string => path.join(d, `.${name}.tmp-${h}-${pid}-0a1b2c3d`);
    const stale = staged('checkpoint-00000004.pth');
    const staleLast = staged('last.pth');
    // A store staged by a killed import, its index and the index's own staging file.
    const store = staged('p.ssp');
    const storeFamily = [store, `${store}.idx`, staged(`${path.basename(store)}.idx`), staged('p.ssp.failures.tsv')];
    const mine = tempPathFor(path.join(d, 'checkpoint-00000006.pth'));
    const otherHost = staged('checkpoint-00000008.pth', deadPid, `not-${host}`);
    const foreign = [path.join(d, '.editor.swp.tmp'), path.join(d, 'notes.tmp'), path.join(d, 'checkpoint-00000002.pth'),
      path.join(d, `.x.tmp-${host}-${deadPid}`)];
    for (const f of [stale, staleLast, ...storeFamily, mine, otherHost, ...foreign]) fs.writeFileSync(f, 'x'.repeat(1000));
    assert.ok(path.basename(mine).startsWith(`.checkpoint-00000006.pth.tmp-${host}-${process.pid}-`), mine);
    assert.deepEqual(removeStaleTemps(d, path.join(d, 'last.pth')).files, [staleLast], 'only that file\'s temporaries');
    assert.deepEqual(removeStaleTemps(d, path.join(d, 'p.ssp')).files.sort(), storeFamily.sort(), 'the store\'s and those named after it');
    const r = removeStaleTemps(d);
    assert.deepEqual(r.files, [stale]);
    assert.equal(r.bytes, 1000);
    for (const f of [mine, otherHost, ...foreign]) assert.ok(fs.existsSync(f), f);
  });
});
