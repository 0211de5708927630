// Data parallelism proven against the single-process computation: the SoCo step (ResNet-18 R-FPN,
// both networks, symmetric loss, LARS, EMA; small views, see test/dist-worker.ts) on 2 processes x
// batch 4 with SyncBN in every BatchNorm gives the losses and the complete state (parameters, BN
// running statistics, target network, LARS momentum) of 1 process x batch 8 with plain BatchNorm,
// after 3 steps, to 1e-5. Then the same run interrupted by Ctrl-C (checkpoint by rank 0) and
// resumed ends in that same state.
//
// FPN note: a SyncBN layer must run its backward on every rank, so a rank whose boxes miss a
// pyramid level must still have that level in its graph (Detectron2's ROIPooler pools every
// level, also with no boxes). The test data give every rank boxes on the same levels.
import { strict as assert } from 'assert';
import { ChildProcess, fork, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as dist from '../lib/dist';

const WORKER = path.join(__dirname, 'dist-worker.js');
const LAUNCHER = path.join(__dirname, 'dist-launcher.js');
const TOL = 1e-5;
const STEPS = 3;

/** The environment without any job variables: a plain single process. */
function singleEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|GROUP_RANK|SLURM_.*)$/.test(k)) delete env[k];
  return env;
}

function checkAgainstReference(dir: string, what: string): void {
  for (const rank of [0, 1]) {
    const c = JSON.parse(fs.readFileSync(path.join(dir, `compare-${rank}.json`), 'utf8'));
    assert.deepEqual(c.missing, [], `${what}, rank ${rank}: state missing`);
    assert.deepEqual(c.extra, [], `${what}, rank ${rank}: state not in the reference`);
    for (const kind of ['params', 'buffers', 'targetParams', 'momentum']) {
      const k = c.kinds[kind];
      assert.ok(k && k.count > 0, `${what}, rank ${rank}: no ${kind} compared`);
      assert.ok(k.maxDiff <= TOL, `${what}, rank ${rank}: ${kind} differ by ${k.maxDiff} (${k.worst})`);
    }
    // Losses of the steps this run made (all ranks log the global loss: the mean of the ranks').
    const ref = c.refLosses.slice(c.start);
    assert.equal(c.losses.length, ref.length);
    c.losses.forEach((l: number, i: number) => assert.ok(Math.abs(l - ref[i]) <= TOL, `${what}: loss of step ${c.start + i + 1}: ${l} vs ${ref[i]}`));
    assert.ok(c.buckets > 1, 'gradients travel in several buckets');
  }
}

describe('dist: 2 processes x batch 4 = 1 process x batch 8 (SoCo step, SyncBN)', function () {
  this.timeout(120000);
  let dir: string;
  let ref: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-ddp-'));
    ref = path.join(dir, 'reference.bin');
    const r = spawnSync(process.execPath, [WORKER, 'soco', dir, '--steps', String(STEPS), '--batch', '8', '--save', ref], { env: singleEnv(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!fs.existsSync(path.join(dir, 'compare-0.json')), 'the reference ran as a single process');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('same losses and same state after 3 steps; gradients all-reduced in buckets during backward (steps 1, 3) and after it (step 2)', async () => {
    const out = fs.mkdtempSync(path.join(dir, 'run-'));
    const log: string[] = [];
    const r = await dist.launch({ nprocPerNode: 2, script: WORKER, args: ['soco', out, '--steps', String(STEPS), '--batch', '8', '--overlap-every', '2', '--compare', ref], execArgv: [], log: (m) => log.push(m), handleSignals: false });
    assert.equal(r.exitCode, 0, log.join('\n'));
    checkAgainstReference(out, '2 processes');
  });

  it('Ctrl-C reaches both workers, which stop after the same step with one checkpoint; resuming ends in the same state', async () => {
    const out = fs.mkdtempSync(path.join(dir, 'resume-'));
    const ckpt = path.join(out, 'ckpt.bin');
    const args = ['soco', out, '--steps', String(STEPS), '--batch', '8', '--ckpt', ckpt, '--compare', ref];
    // The launcher is its own process, as under a terminal; the sleep leaves time for the signal.
    const launcher: ChildProcess = fork(LAUNCHER, ['2', WORKER, ...args, '--sleep', '1500', '--progress'], { env: singleEnv(), execArgv: [], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let stdout = '';
    let stderr = '';
    launcher.stderr!.on('data', (d) => { stderr += d; });
    const code = await new Promise<number | null>((resolve) => {
      let sent = false;
      launcher.stdout!.on('data', (d) => {
        stdout += d;
        if (!sent && /step 1 loss/.test(stdout)) { sent = true; launcher.kill('SIGINT'); }
      });
      launcher.on('exit', (c) => resolve(c));
    });
    assert.equal(code, dist.INTERRUPTED_EXIT_CODE, stderr);
    assert.match(stderr, /SIGINT: asking 2 worker\(s\) to checkpoint and stop/);
    const stopped = [...stdout.matchAll(/rank (\d) stopped after step (\d)/g)];
    assert.deepEqual(stopped.map((m) => m[1]).sort(), ['0', '1'], stdout);
    assert.equal(stopped[0][2], stopped[1][2], 'both ranks stop after the same step');
    const at = Number(stopped[0][2]);
    assert.ok(at >= 1 && at < STEPS, `stopped after step ${at}`);
    assert.ok(fs.existsSync(ckpt));
    assert.ok(!fs.existsSync(path.join(out, 'compare-0.json')), 'the interrupted run did not finish');

    const log: string[] = [];
    const r = await dist.launch({ nprocPerNode: 2, script: WORKER, args: [...args, '--resume'], execArgv: [], log: (m) => log.push(m), handleSignals: false, env: singleEnv() });
    assert.equal(r.exitCode, 0, log.join('\n'));
    const c = JSON.parse(fs.readFileSync(path.join(out, 'compare-0.json'), 'utf8'));
    assert.equal(c.start, at);
    checkAgainstReference(out, 'interrupted and resumed');
  });
});
