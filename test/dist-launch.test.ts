// The launcher and the collectives across real processes: two workers on 127.0.0.1 with Gloo,
// started by launch() exactly as `soco-train train --nproc-per-node 2` starts them
// (test/dist-worker.ts holds the scenarios). A killed worker, Ctrl-C and the training
// equivalence are tested through the real CLI in dist-train.test.ts.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as dist from '../lib/distributed';

const WORKER = path.join(__dirname, 'dist-worker.js');

const dirs: string[] = [];

/** Runs a worker scenario on 2 processes; the launcher's own messages are collected, not printed. */
async function run(scenario: string, args: string[] = []): Promise<{ result: dist.LaunchResult; out: string; log: string[] }> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `soco-dist-${scenario}-`));
  dirs.push(out);
  const log: string[] = [];
  const result = await dist.launch({ nprocPerNode: 2, script: WORKER, args: [scenario, out, ...args], execArgv: [], log: (m) => log.push(m), handleSignals: false });
  return { result, out, log };
}

const readJson = (dir: string, name: string): any => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));

describe('dist: launcher and collectives (2 processes, Gloo)', function () {
  this.timeout(90000);
  after(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

  it('all_reduce sum/avg/max, broadcast, all_gather, barrier, store and in-flight collectives agree on both ranks', async () => {
    const { result, out, log } = await run('collectives');
    assert.deepEqual(log, []);
    assert.equal(result.exitCode, 0);
    for (const r of [0, 1]) {
      const c = readJson(out, `collectives-${r}.json`);
      assert.deepEqual(c.sum, [3, 30, -1]);
      assert.deepEqual(c.avg, [1.5, 15, -0.5]);
      assert.deepEqual(c.max, [1, 5]);
      assert.deepEqual(c.int64, [3]);
      assert.deepEqual(c.broadcast, [101, 102]);
      assert.deepEqual(c.allGather, [{ shape: [2, 2], values: [0, 0, 7, 0] }, { shape: [2, 2], values: [1, 1, 7, -1] }]);
      assert.equal(c.store, `from ${1 - r}`);
      assert.match(c.avgIntError, /op 'avg' needs a floating-point tensor/);
      assert.deepEqual(c.inFlight, [1, 3, 5, 7, 9]);
    }
  });

  it('a collective that a peer never joins times out with an error naming the rank; the group is then failed', async () => {
    const { result, out } = await run('timeout', ['--timeout', '20000']);
    assert.equal(result.exitCode, 0);
    const t = readJson(out, 'timeout.json');
    assert.match(t.message, /dist\.allReduce: rank 0 of 2 \(gloo\): allReduce timed out after 1500 ms \(another rank is slow, stuck or gone\)/);
    assert.ok(t.elapsedMs >= 1400, `gave up after ${t.elapsedMs} ms, before its timeout`);
    assert.equal(t.failed, true);
    assert.match(t.afterwards, /rank 0 of 2 \(gloo\): barrier: the process group failed earlier/);
  });

  it('a worker that throws ends the job with its exit code and its last error lines', async () => {
    const { result, log } = await run('fail');
    assert.equal(result.exitCode, 1);
    assert.equal(result.failed?.rank, 1);
    assert.equal(result.failed?.code, 1);
    assert.ok(result.failed!.lastLines.some((l) => l.includes('Error: boom from rank 1')), result.failed!.lastLines.join('\n'));
    // Rank 0's barrier fails as soon as rank 1 goes; whichever exits first, rank 1 is the cause.
    assert.match(log[0], /worker rank 1 \(pid \d+\) exited with code 1; stopped the other 1 worker\(s\) of this node( \(rank 0 failed too, after losing it\))?\.\nLast lines of its stderr:\n {2}Error: boom from rank 1/);
  });
});
