// TensorBoard event files (OUT/tb/) read back with TensorBoard's own reader (EventAccumulator, from
// the virtualenv scripts/setup.sh makes): a real training run, resumed from an earlier checkpoint,
// shows every logged iteration once with the tags, steps, wall times and values of metrics.jsonl;
// a torn last record is dropped on resume, a corrupt one is refused naming the file.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { SoCoTrainer } from '../lib/train/trainer';
import { TrainConfig } from '../lib/train/config';
import { MetricRecord, readMetrics } from '../lib/train/metrics';
import { TensorBoardWriter, readEventRecords } from '../lib/train/tensorboard';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { listImageFiles } from '../lib/train/data_source';
import { readImageSize } from '../lib/data/image';
import { TENSORBOARD_PYTHON } from './reference/python';

const ROOT = path.resolve(__dirname, '..', '..');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');

type Scalars = Record<string, [step: number, wallTime: number, value: number][]>;

// As `tensorboard --logdir LOGDIR` loads it: one run per folder holding event files, each read by
// an EventAccumulator; all scalars kept (none sampled away), and the reader's own hiding of steps
// that repeat (purge_orphaned_data) off, so the test sees whatever the files hold.
const READ = `
import json, sys
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
m = EventMultiplexer(size_guidance={"scalars": 0}, purge_orphaned_data=False).AddRunsFromDirectory(sys.argv[1])
m.Reload()
runs = {run: m.GetAccumulator(run) for run in m.Runs()}
print(json.dumps({run: {t: [[e.step, e.wall_time, e.value] for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]} for run, ea in runs.items()}))
`;

/** The scalar series of the one run under `logdir` (OUT, whose run is tb/), as TensorBoard loads them. */
function readWithTensorBoard(logdir: string): Scalars {
  if (!fs.existsSync(TENSORBOARD_PYTHON))
    throw new Error(`TensorBoard's reader is not installed (${TENSORBOARD_PYTHON}): run \`bash scripts/setup.sh\``);
  const runs = JSON.parse(execFileSync(TENSORBOARD_PYTHON, ['-c', READ, logdir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as Record<string, Scalars>;
  assert.deepEqual(Object.keys(runs), ['tb'], `runs under ${logdir}`);
  return runs.tb;
}

/** The tags each record must appear under, written out by hand (not through the writer's own table). */
function expectedScalars(r: MetricRecord): Record<string, number> {
  const s: Record<string, number> = {
    'loss/total': r.loss, lr: r.lr, tau: r.tau, 'throughput/images_per_sec': r.imagesPerSec, 'time/sec_per_iter': r.secPerIter,
    'time/data_wait_frac': r.dataWaitFrac, embedding_std: r.embeddingStd, 'memory/rss_mib': r.memoryMiB, 'memory/peak_rss_mib': r.peakMemoryMiB!,
  };
  for (const [pair, v] of Object.entries(r.pairs!)) s[`loss/${pair}`] = v;
  return s;
}

/** TensorBoard's series equal metrics.jsonl: same tags, each step once in order, same wall time and float32 value. */
function assertSameAsMetrics(scalars: Scalars, records: MetricRecord[]): void {
  const want = records.map(expectedScalars);
  assert.deepEqual(Object.keys(scalars).sort(), Object.keys(want[0]).sort(), 'tags');
  for (const [tag, series] of Object.entries(scalars)) {
    assert.deepEqual(series.map(([step]) => step), records.map((r) => r.iter), `${tag}: steps`);
    series.forEach(([, wall, value], i) => {
      assert.ok(Math.abs(wall - records[i].time / 1000) < 1e-6, `${tag} step ${records[i].iter}: wall time ${wall} vs ${records[i].time / 1000}`);
      // simple_value is a float32, as in every TensorBoard scalar summary.
      assert.equal(value, Math.fround(want[i][tag]), `${tag} step ${records[i].iter}`);
    });
  }
}

describe('TensorBoard event files', function () {
  this.timeout(600_000);
  let dir: string;
  let store: string;
  let threads = 1;
  before(async () => {
    threads = torch.getNumThreads();
    torch.setNumThreads(1);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-tensorboard-'));
    store = path.join(dir, 'train.proposals');
    const w = ProposalStoreWriter.open(store, { format: 'soco-train proposals 1', root: TRAIN });
    for (const key of listImageFiles(TRAIN)) {
      const { width: W, height: H } = await readImageSize(path.join(TRAIN, key));
      w.append(key, { boxes: [0, 0, Math.round(W * 0.6), Math.round(H * 0.6), Math.round(W * 0.3), Math.round(H * 0.3), W, H], width: W, height: H, rawCount: 2, uniqueCount: 2, filterStage: 0, millis: 0 });
    }
    w.close();
  });
  after(() => { torch.setNumThreads(threads); fs.rmSync(dir, { recursive: true, force: true }); });

  it('a run resumed from an earlier checkpoint: every logged step once, with the values of metrics.jsonl', async () => {
    const out = path.join(dir, 'run');
    const cfg = (resume: string): Partial<TrainConfig> => ({
      images: TRAIN, proposals: store, out, depth: 18, head: false, batchSize: 2, maxIters: 6, epochs: 2, warmupEpochs: 1,
      v1Size: 96, v2Size: 96, v3Size: 48, projectorHidden: 64, predictorHidden: 64, embedDim: 32, logEvery: 1,
      checkpointEvery: 3, keepCheckpoints: 3, prefetch: 1, seed: 5, resume,
    });
    const first = new SoCoTrainer(cfg('auto'));
    await first.train();
    await first.close();
    const firstRun = readMetrics(path.join(out, 'metrics.jsonl'));
    assert.deepEqual(firstRun.map((r) => r.iter), [1, 2, 3, 4, 5, 6]);
    assertSameAsMetrics(readWithTensorBoard(out), firstRun);

    // Back to iteration 3, as after a crash past that checkpoint: iterations 4..6 are trained again.
    const second = new SoCoTrainer(cfg(path.join(out, 'checkpoint-00000003.pth')));
    await second.train();
    await second.close();
    const records = readMetrics(path.join(out, 'metrics.jsonl'));
    assert.deepEqual(records.map((r) => r.iter), [1, 2, 3, 4, 5, 6]);
    assert.ok(records[3].time > firstRun[5].time, 'iterations 4..6 are the second run\'s');
    assert.equal(fs.readdirSync(path.join(out, 'tb')).length, 1, 'one event file per run');
    assertSameAsMetrics(readWithTensorBoard(out), records);
  });

  const rec = (iter: number): MetricRecord => ({
    iter, epoch: 0, loss: -iter, lr: 0.5, tau: 0.99, imagesPerSec: 10, secPerIter: 0.2, dataWaitFrac: 0, memoryMiB: 900,
    peakMemoryMiB: 950, embeddingStd: 0.05, pairs: { 'v1-v2': -iter }, time: 1.7e12 + iter * 1000,
  });

  it('a torn last record (a kill mid-write) is dropped on resume; a corrupt one names the file', () => {
    const out = path.join(dir, 'torn');
    let w = new TensorBoardWriter(out);
    for (let i = 1; i <= 4; i++) w.write(rec(i));
    w.close();
    const file = w.file;
    const whole = fs.readFileSync(file);
    fs.writeFileSync(file, whole.subarray(0, whole.length - 7));
    assert.equal(readEventRecords(file).length, 4, 'file_version + iterations 1..3');
    w = new TensorBoardWriter(out, 3);
    w.write(rec(4));
    w.close();
    assertSameAsMetrics(readWithTensorBoard(out), [1, 2, 3, 4].map(rec));

    const bad = Buffer.from(fs.readFileSync(file));
    bad[bad.length - 30] ^= 0xff;
    fs.writeFileSync(file, bad);
    assert.throws(() => new TensorBoardWriter(out, 4), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: corrupt event record at byte \\d+ \\(data checksum\\)`));
  });

  it('a fresh run (no resume) replaces the folder\'s events', () => {
    const out = path.join(dir, 'fresh');
    let w = new TensorBoardWriter(out);
    for (let i = 1; i <= 3; i++) w.write(rec(i));
    w.close();
    w = new TensorBoardWriter(out);
    w.write(rec(1));
    w.close();
    assert.equal(fs.readdirSync(path.join(out, 'tb')).length, 1);
    assertSameAsMetrics(readWithTensorBoard(out), [rec(1)]);
  });
});
