// Distributed training as a user runs it: `soco-train train --nproc-per-node 2 --device cpu` (the
// real CLI, Gloo, the bundled photos, a small ResNet-18 FPN config in the demo's style).
//  - 2 processes x global batch 8 = 1 process x batch 8, with SyncBN in every network: the loss
//    of every iteration, and the online, predictor and target weights and BN statistics after 3
//    steps, to 1e-5; the LARS momentum to 5e-4 relative (why: assertSameTraining).
//  - SIGTERM to the launcher mid-run: every worker stops after the same iteration, rank 0 writes
//    one checkpoint, exit 0; the same command resumes and finishes.
//  - A killed worker ends the job, and the launcher names its rank.
// Two machines (network namespaces) are tested in dist-netns.test.ts.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readMetrics } from '../lib/train/metrics';
import { assertSameTraining, killLeftovers, makeStore, show, soco, trainArgs, TRAIN, workerPid } from './dist-common';

describe('soco-train train --nproc-per-node 2 (CPU, Gloo)', function () {
  this.timeout(300000);
  let dir: string;
  let store: string;
  const config = (out: string, batch: number, iters: number): string[] => trainArgs(store, out, batch, iters);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-dist-train-'));
    store = path.join(dir, 'train.store');
    await makeStore(TRAIN, store);
  });
  after(() => {
    killLeftovers();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('2 processes x global batch 8 = 1 process x batch 8: same loss at every iteration, same final weights (1e-5), SyncBN on', async () => {
    const one = path.join(dir, 'one');
    const two = path.join(dir, 'two');
    // Side by side: they are independent runs.
    const [r1, r2] = await Promise.all([soco(config(one, 8, 3)), soco([...config(two, 8, 3), '--nproc-per-node', '2'])]);
    assert.equal(r1.code, 0, show(r1));
    assert.equal(r2.code, 0, show(r2));
    // Rank 0 alone prints: the config, one progress line per iteration, one summary.
    assert.equal(r2.stdout.match(/^config \(presets/gm)?.length, 1, r2.stdout);
    assert.equal(r2.stdout.match(/^epoch \d+\/3 iter \d\/3 loss/gm)?.length, 3, r2.stdout);
    assert.equal(r2.stdout.match(/^done: 3 iterations/gm)?.length, 1, r2.stdout);
    assert.match(r2.stdout, /Detectron2 weights: .*detectron2\.pth/);

    assertSameTraining(one, two, 3);
  });

  it('SIGTERM to the launcher mid-run: one checkpoint by rank 0, exit 0; the same command resumes and finishes', async () => {
    const out = path.join(dir, 'resume');
    const args = [...config(out, 2, 4), '--nproc-per-node', '2'];
    let signalled = false;
    const first = await soco(args, { onLine: (line, child) => {
      if (!signalled && /^epoch \d+\/\d+ iter 1\/4 loss/.test(line)) { signalled = true; child.kill('SIGTERM'); }
    } });
    assert.equal(first.code, 0, show(first));
    assert.match(first.stderr, /soco-train: SIGTERM: asking 2 worker\(s\) to checkpoint and stop/);
    const stopped = Number(/^stopped at iteration (\d+); continue with the same command/m.exec(first.stdout)?.[1]);
    assert.ok(stopped >= 1 && stopped < 4, show(first));
    assert.equal(first.stdout.match(/^checkpoint \(/gm)?.length, 1, 'one checkpoint, by rank 0');
    assert.match(first.stdout, new RegExp(`^checkpoint \\(stop\\) .*checkpoint-${String(stopped).padStart(8, '0')}\\.pth at iteration ${stopped}$`, 'm'));
    assert.deepEqual(fs.readdirSync(out).filter((f) => f.endsWith('.pth')).sort(), [`checkpoint-${String(stopped).padStart(8, '0')}.pth`, 'last.pth']);
    assert.ok(!fs.existsSync(path.join(out, 'detectron2.pth')), 'no export for an unfinished run');

    const second = await soco(args);
    assert.equal(second.code, 0, show(second));
    assert.equal(second.stdout.match(/^resuming from .*last\.pth at iteration (\d+)$/gm)?.length, 1, second.stdout);
    assert.match(second.stdout, new RegExp(`^resuming from .*last\\.pth at iteration ${stopped}$`, 'm'));
    assert.match(second.stdout, /^done: 4 iterations/m);
    assert.deepEqual(readMetrics(path.join(out, 'metrics.jsonl')).map((r) => r.iter), [1, 2, 3, 4]);
    assert.ok(fs.existsSync(path.join(out, 'detectron2.pth')));
  });

  it('a killed worker ends the job: the other is stopped and the launcher exits naming the rank', async () => {
    const out = path.join(dir, 'killed');
    let victim = 0;
    const r = await soco([...config(out, 2, 50), '--nproc-per-node', '2'], { onLine: (line, child) => {
      if (!victim && /^epoch \d+\/\d+ iter 1\/50 loss/.test(line)) {
        victim = workerPid(child.pid!, 1);
        process.kill(victim, 'SIGKILL');
      }
    } });
    assert.ok(victim > 0, show(r));
    assert.equal(r.code, 128 + 9, show(r));
    assert.match(r.stderr, new RegExp(`soco-train: worker rank 1 \\(pid ${victim}\\) was killed by SIGKILL; stopped the other 1 worker\\(s\\) of this node`));
    assert.doesNotMatch(r.stdout, /^done:/m);
  });
});
