// Metrics file, progress line, collapse check, and the PNG plots (decoded by PIL, not by us).
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MetricsWriter, MetricRecord, readMetrics, progressLine, formatDuration, isCollapsed, Throughput } from '../lib/train/metrics';
import { plotRun, niceTicks, tickLabel, Canvas, encodePNG } from '../lib/train/plot';
import { PYTHON } from './reference/train_ref';

function rec(iter: number, extra: Partial<MetricRecord> = {}): MetricRecord {
  return {
    iter, epoch: Math.floor((iter - 1) / 10), loss: -2 - 4 * (1 - Math.exp(-iter / 20)), lr: 0.1 * Math.min(1, iter / 10), tau: 0.99 + 0.0001 * iter,
    imagesPerSec: 50 + iter, secPerIter: 0.5, dataWaitFrac: 0.1, memoryMiB: 900, embeddingStd: 0.05, time: 1e12 + iter,
    pairs: { 'v1-v2': -1 - iter / 100, 'v1-v3': -1.5 }, ...extra,
  };
}

describe('train metrics and plots', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-metrics-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes one JSON object per line; a resume at step s drops records after s', () => {
    const w = new MetricsWriter(dir);
    for (let i = 1; i <= 8; i++) w.write(rec(i));
    w.close();
    assert.deepEqual(readMetrics(w.file).map((r) => r.iter), [1, 2, 3, 4, 5, 6, 7, 8]);
    // The interrupted run logged up to 8 but its last checkpoint is at 5.
    const w2 = new MetricsWriter(dir, 5);
    w2.write(rec(6, { loss: -7 }));
    w2.close();
    const r = readMetrics(w.file);
    assert.deepEqual(r.map((x) => x.iter), [1, 2, 3, 4, 5, 6]);
    assert.equal(r[5].loss, -7);
    // A fresh run (step 0) starts a new file.
    new MetricsWriter(dir, 0).close();
    assert.deepEqual(readMetrics(w.file), []);
  });

  it('tolerates a torn last line (killed mid-write) and rejects corruption elsewhere', () => {
    const f = path.join(dir, 'metrics.jsonl');
    fs.writeFileSync(f, `${JSON.stringify(rec(1))}\n${JSON.stringify(rec(2))}\n{"iter": 3, "lo`);
    assert.deepEqual(readMetrics(f).map((r) => r.iter), [1, 2]);
    fs.writeFileSync(f, `garbage\n${JSON.stringify(rec(2))}\n`);
    assert.throws(() => readMetrics(f), /metrics\.jsonl:1: not JSON/);
    assert.throws(() => readMetrics(path.join(dir, 'none.jsonl')), /does not exist/);
  });

  it('progress line has epoch, iteration, loss, lr, tau, images/s, data wait, memory and ETA', () => {
    const line = progressLine(rec(25, { imagesPerSec: 1843.2, dataWaitFrac: 0.031, memoryMiB: 12595 }), { epochs: 100, totalIters: 125100, etaSeconds: 94390 });
    assert.equal(line, 'epoch 3/100 iter 25/125100 loss -4.8540 lr 1.00e-1 tau 0.99250 img/s 1843 data 3% mem 12.3G eta 1d 02:13:10');
    assert.equal(formatDuration(59.6), '00:01:00');
    assert.equal(formatDuration(NaN), '?');
  });

  it('collapse check: std below 10% of 1/sqrt(D)', () => {
    assert.equal(isCollapsed(0.06, 256), false);
    assert.equal(isCollapsed(0.001, 256), true);
    assert.equal(isCollapsed(NaN, 256), false);
  });

  it('throughput window: images per second and data-wait fraction', () => {
    // A clock the test moves (ms), so the values are known by hand whatever the machine's load.
    let now = 1000;
    const t = new Throughput(() => now);
    now += 50;
    t.step(8, 0.02, 0.01);
    t.step(8, 0.02, 0.01);
    assert.deepEqual(t.window(), { imagesPerSec: 16 / 0.05, secPerIter: 0.025, dataWaitFrac: 0.02 / 0.05 });
    now += 200;
    t.step(8, 0.2, 0.25);  // waits are summed apart from the clock: never more than the window
    assert.deepEqual(t.window(), { imagesPerSec: 8 / 0.2, secPerIter: 0.2, dataWaitFrac: 1 });
    assert.deepEqual(t.window(), { imagesPerSec: 0, secPerIter: 0, dataWaitFrac: 0 }, 'an empty window');
    assert.ok(Math.abs(t.meanStepSeconds - 0.24 / 3) < 1e-15, `${t.meanStepSeconds}`);
  });

  it('ticks and labels', () => {
    assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1].map((v) => v));
    assert.deepEqual(niceTicks(-7.3, -2.1), [-7, -6, -5, -4, -3]);
    assert.equal(tickLabel(0.0001), '1.0e-4');
    assert.equal(tickLabel(125000), '1.3e5');
    assert.equal(tickLabel(0.25), '0.25');
  });

  it('plot --run: PNGs that PIL decodes, with the curves drawn in the series colours', () => {
    const w = new MetricsWriter(dir);
    for (let i = 1; i <= 40; i++) w.write(rec(i));
    w.close();
    const files = plotRun(dir);
    const check = `
import json, sys
from PIL import Image
out = {}
for f in sys.argv[1:]:
    im = Image.open(f)
    im.load()
    px = im.convert('RGB').getdata()
    out[f] = {'size': im.size, 'mode': im.mode, 'blue': sum(1 for p in px if p == (31, 119, 180)), 'red': sum(1 for p in px if p == (214, 39, 40)), 'white': sum(1 for p in px if p == (255, 255, 255))}
print(json.dumps(out))`;
    const all = Object.values(files);
    const res = JSON.parse(execFileSync(PYTHON, ['-c', check, ...all], { encoding: 'utf8' })) as Record<string, { size: number[]; mode: string; blue: number; red: number; white: number }>;
    for (const f of all) {
      assert.deepEqual(res[f].size, [800, 480], f);
      assert.equal(res[f].mode, 'RGB');
      assert.ok(res[f].blue > 500, `${f}: curve pixels ${res[f].blue}`);
      assert.ok(res[f].white > 800 * 480 * 0.7, `${f}: mostly background`);
    }
    assert.ok(res[files.loss].red > 300, 'per-pair loss curve drawn');
  });

  it('PNG encoder: exact pixels round-trip through PIL', () => {
    const cv = new Canvas(3, 2, [0, 0, 0]);
    cv.set(0, 0, [255, 0, 0]);
    cv.set(2, 1, [1, 2, 3]);
    const f = path.join(dir, 'tiny.png');
    fs.writeFileSync(f, encodePNG(cv));
    const out = execFileSync(PYTHON, ['-c', 'import sys; from PIL import Image; print(list(Image.open(sys.argv[1]).getdata()))', f], { encoding: 'utf8' });
    assert.equal(out.trim(), '[(255, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0), (1, 2, 3)]');
  });
});
