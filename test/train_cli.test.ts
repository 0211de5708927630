// `soco-train train` flags, and the process behaviour a user sees: SIGTERM mid-run writes a
// checkpoint and exits 0, the same command then resumes and finishes with the Detectron2 export.
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { overridesFromOptions, addConfigFlags } from '../lib/cli/train';
import { buildProgram } from '../lib/cli/main';
import { resolveConfig } from '../lib/train/config';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { listImageFiles } from '../lib/train/data_source';
import { readImageSize } from '../lib/data/image';

const ROOT = path.resolve(__dirname, '..', '..');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');

function parse(args: string[]): Record<string, unknown> {
  const cmd = addConfigFlags(new Command('train').exitOverride());
  cmd.parse(['node', 'train', ...args]);
  return cmd.opts();
}

/** Runs `soco-train <args>` (commands registered by registerTrainCommands) in a child process. */
function cli(args: string[], onLine?: (line: string, child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; out: string }> {
  const harness = `
    const { Command } = require('commander');
    const { registerTrainCommands } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'cli', 'train.js'))});
    const p = new Command('soco-train');
    registerTrainCommands(p);
    p.parseAsync(process.argv.slice(0, 1).concat(['x'], process.argv.slice(1))).catch((e) => { console.error('soco-train: ' + e.message); process.exit(1); });`;
  return new Promise((resolve) => {
    // Passive OpenMP waits: the test machine's cores are shared (spinning threads slow everything).
    const child = spawn(process.execPath, ['-e', harness, ...args], { cwd: ROOT });
    let out = '';
    let pending = '';
    const take = (d: Buffer): void => {
      out += d.toString();
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) onLine?.(l, child);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) => resolve({ code, out }));
  });
}

describe('soco-train train (CLI)', function () {
  this.timeout(600000);
  let dir: string;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-cli-'));
    const w = ProposalStoreWriter.open(path.join(dir, 'p.store'), { format: 'soco-train proposals 1' });
    for (const key of listImageFiles(TRAIN)) {
      const { width: W, height: H } = await readImageSize(path.join(TRAIN, key));
      w.append(key, { boxes: [0, 0, Math.round(W * 0.6), Math.round(H * 0.6), Math.round(W * 0.3), Math.round(H * 0.3), W, H], width: W, height: H, rawCount: 2, uniqueCount: 2, filterStage: 0, millis: 0 });
    }
    w.close();
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('every config key is a flag; booleans take --x, --x false and --no-x; --resume / --no-resume / --resume FILE', () => {
    const o = overridesFromOptions(parse(['--batch-size', '64', '--no-fpn', '--jitter', 'false', '--head', '--crop-scale', '0.4,1', '--resume', '--images', 'imgs']));
    const c = resolveConfig({ overrides: o }).config;
    assert.equal(c.batchSize, 64);
    assert.equal(c.fpn, false);
    assert.equal(c.jitter, false);
    assert.equal(c.head, true);
    assert.deepEqual(c.cropScale, [0.4, 1]);
    assert.equal(c.resume, 'must');
    assert.equal(c.images, path.resolve('imgs'));
    assert.equal(resolveConfig({ overrides: overridesFromOptions(parse(['--no-resume'])) }).config.resume, 'never');
    assert.equal(resolveConfig({ overrides: overridesFromOptions(parse(['--resume', 'a/b.pth'])) }).config.resume, path.resolve('a/b.pth'));
    assert.deepEqual(overridesFromOptions(parse([])), {}, 'flags not given do not override a config file');
    assert.deepEqual(buildProgram().commands.map((c) => c.name()).sort(), ['demo', 'env', 'eval-retrieval', 'export', 'plot', 'proposals', 'train', 'views']);
  });

  it('SIGTERM mid-run: checkpoint, exit 0; the same command resumes and finishes with the Detectron2 export', async () => {
    const out = path.join(dir, 'run');
    const args = ['train', '--images', TRAIN, '--proposals', path.join(dir, 'p.store'), '--out', out, '--depth', '18', '--no-head',
      '--batch-size', '2', '--max-iters', '6', '--warmup-epochs', '1', '--epochs', '2', '--v1-size', '112', '--projector-hidden', '64',
      '--predictor-hidden', '64', '--embed-dim', '32', '--log-every', '1', '--checkpoint-every', '0', '--prefetch', '1'];
    let signalled = false;
    const first = await cli(args, (line, child) => {
      if (!signalled && /^epoch 1\/\d+ iter 1\/6 loss/.test(line)) { signalled = true; child.kill('SIGTERM'); }
    });
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /SIGTERM: stopping after this iteration and writing a checkpoint/);
    // The signal lands during some iteration after the first (output reaches us with a delay).
    const stopped = Number(/stopped at iteration (\d+); continue with the same command/.exec(first.out)?.[1]);
    assert.ok(stopped >= 1 && stopped < 6, first.out);
    assert.match(first.out, new RegExp(`checkpoint \\(stop\\) .*checkpoint-${String(stopped).padStart(8, '0')}\\.pth at iteration ${stopped}`));
    assert.match(first.out, /config \(presets: none\):\n[\s\S]*batchSize\s+2\s+\(flag\)/);
    assert.ok(fs.existsSync(path.join(out, 'last.pth')));
    assert.ok(!fs.existsSync(path.join(out, 'detectron2.pth')), 'no export for an unfinished run');

    const second = await cli(args);
    assert.equal(second.code, 0, second.out);
    assert.match(second.out, new RegExp(`resuming from .*last\\.pth at iteration ${stopped}`));
    assert.match(second.out, /done: 6 iterations/);
    assert.match(second.out, /Detectron2 weights: .*detectron2\.pth\nfine-tuning config: .*detectron2_mask_rcnn_1x\.yaml/);
    assert.ok(fs.existsSync(path.join(out, 'detectron2.pth')));
  });

  it('--arch c4 alone trains: the architecture brings its view layout (V1 and V2, no jitter)', async () => {
    const out = path.join(dir, 'c4');
    const r = await cli(['train', '--arch', 'c4', '--images', TRAIN, '--proposals', path.join(dir, 'p.store'), '--out', out, '--depth', '18',
      '--batch-size', '2', '--max-iters', '2', '--warmup-epochs', '1', '--epochs', '1', '--v1-size', '96', '--v2-size', '96',
      '--projector-hidden', '64', '--predictor-hidden', '64', '--embed-dim', '32', '--log-every', '1', '--prefetch', '1']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /arch\s+c4\s+\(flag\)/);
    assert.match(r.out, /multiView\s+false\s+\(arch c4\)/);
    assert.match(r.out, /jitter\s+false\s+\(arch c4\)/);
    assert.match(r.out, /done: 2 iterations/);
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { arch: string; multiView: boolean };
    assert.deepEqual([saved.arch, saved.multiView], ['c4', false]);
    // Only V1 and V2: one view pair in the log.
    assert.deepEqual(Object.keys((JSON.parse(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').split('\n')[0]) as { pairs: object }).pairs), ['v1-v2']);
  });

  it('errors before any work exit 1 with the message', async () => {
    const r = await cli(['train', '--images', path.join(dir, 'missing'), '--out', path.join(dir, 'x'), '--proposals', path.join(dir, 'p.store')]);
    assert.equal(r.code, 1);
    assert.match(r.out, /soco-train: --images .*missing: no such folder/);
    const bad = await cli(['train', '--depth', '42']);
    assert.equal(bad.code, 1);
    assert.match(bad.out, /flag --depth: depth must be one of 18, 34, 50, 101, got "42"/);
  });
});
