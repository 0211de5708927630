// Run metrics: one JSON object per logged iteration in OUT/metrics.jsonl, a one-line progress
// report, throughput/ETA bookkeeping and the collapse monitor.
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../io/temp_files';
import { cuda } from '../torch';

export interface MetricRecord {
  /** Iterations completed (1-based: the record after the first step has iter 1). */
  iter: number;
  /** Epoch of that iteration (0-based). */
  epoch: number;
  loss: number;
  /** Learning rate used by the step. */
  lr: number;
  /** Target momentum used after the step. */
  tau: number;
  /** Training images per second over the logging window (all processes). */
  imagesPerSec: number;
  /** Seconds per iteration over the window, and the fraction of it spent waiting for data. */
  secPerIter: number;
  dataWaitFrac: number;
  /** Resident memory of this process in MiB, its peak so far (and device memory where the backend reports it). */
  memoryMiB: number;
  peakMemoryMiB?: number;
  deviceMemoryMiB?: number;
  /** Mean per-dimension std of L2-normalised online embeddings; ~1/sqrt(D) healthy, ~0 collapsed. */
  embeddingStd: number;
  /** Symmetric loss per view pair, e.g. { 'v1-v2': -3.1, 'v1-v3': -2.9 }. */
  pairs?: Record<string, number>;
  /** fp16 runs: the dynamic loss scale after this iteration. */
  lossScale?: number;
  /** Wall-clock time (ms since epoch). */
  time: number;
  [extra: string]: unknown;
}

export const METRICS_FILE = 'metrics.jsonl';

/** Reads OUT/metrics.jsonl (skipping a torn last line from a killed run). */
export function readMetrics(file: string): MetricRecord[] {
  if (!fs.existsSync(file)) throw new Error(`metrics file ${file} does not exist (was the run started with this --out?)`);
  const out: MetricRecord[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as MetricRecord);
    } catch (e) {
      // Only the final line may be torn (a kill mid-write); anything else is corruption.
      if (i < lines.length - 2) throw new Error(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
    }
  });
  return out;
}

/**
 * Appends records to OUT/metrics.jsonl. On resume from step s, records with iter > s (written after
 * that checkpoint by the interrupted run) are dropped first, so the file describes one history.
 */
export class MetricsWriter {
  readonly file: string;
  private fd: number;

  constructor(outDir: string, resumeStep = 0) {
    this.file = path.join(outDir, METRICS_FILE);
    if (resumeStep > 0 && fs.existsSync(this.file)) {
      const kept = readMetrics(this.file).filter((r) => r.iter <= resumeStep);
      writeFileAtomic(this.file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    } else if (resumeStep === 0 && fs.existsSync(this.file)) {
      fs.rmSync(this.file);
    }
    this.fd = fs.openSync(this.file, 'a');
  }

  write(r: MetricRecord): void {
    fs.writeSync(this.fd, JSON.stringify(r) + '\n');
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** Accumulates step and data-wait times between log points. */
export class Throughput {
  private steps = 0;
  private images = 0;
  private dataWait = 0;
  private start: number;
  private totalSteps = 0;
  private totalTime = 0;

  /** `clock`: milliseconds, monotonic (a test passes its own to know the windows exactly). */
  constructor(private readonly clock: () => number = () => performance.now()) {
    this.start = clock();
  }

  /** One training step that took `seconds` overall, `waitSeconds` of it waiting for the batch. */
  step(images: number, seconds: number, waitSeconds: number): void {
    this.steps++;
    this.images += images;
    this.dataWait += waitSeconds;
    this.totalSteps++;
    this.totalTime += seconds;
  }

  /** Window statistics since the last call, then a new window. */
  window(): { imagesPerSec: number; secPerIter: number; dataWaitFrac: number } {
    const now = this.clock();
    const elapsed = Math.max(1e-9, (now - this.start) / 1000);
    const r = {
      imagesPerSec: this.images / elapsed,
      secPerIter: this.steps ? elapsed / this.steps : 0,
      dataWaitFrac: Math.min(1, this.dataWait / elapsed),
    };
    this.steps = 0;
    this.images = 0;
    this.dataWait = 0;
    this.start = now;
    return r;
  }

  /** Mean seconds per step over the whole run so far (for the ETA). */
  get meanStepSeconds(): number { return this.totalSteps ? this.totalTime / this.totalSteps : 0; }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const d = Math.floor(s / 86400);
  const hh = String(Math.floor((s % 86400) / 3600)).padStart(2, '0');
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return `${d ? `${d}d ` : ''}${hh}:${mm}:${ss}`;
}

/** `epoch 3/100 iter 1200/125100 loss -6.1234 lr 7.90e+0 tau 0.99012 img/s 1843 data 3% mem 12.3G eta 1d 02:13:10` */
export function progressLine(r: MetricRecord, o: { epochs: number; totalIters: number; etaSeconds: number }): string {
  const mem = r.deviceMemoryMiB !== undefined ? r.deviceMemoryMiB : r.memoryMiB;
  return [
    `epoch ${r.epoch + 1}/${o.epochs}`,
    `iter ${r.iter}/${o.totalIters}`,
    `loss ${r.loss.toFixed(4)}`,
    `lr ${r.lr.toExponential(2)}`,
    `tau ${r.tau.toFixed(5)}`,
    `img/s ${r.imagesPerSec >= 100 ? r.imagesPerSec.toFixed(0) : r.imagesPerSec.toFixed(1)}`,
    `data ${(100 * r.dataWaitFrac).toFixed(0)}%`,
    `mem ${mem >= 1024 ? `${(mem / 1024).toFixed(1)}G` : `${mem.toFixed(0)}M`}`,
    `eta ${formatDuration(o.etaSeconds)}`,
  ].join(' ');
}

/**
 * Collapse check on embeddingStd: a spread of unit vectors in D dims has per-dimension std about
 * 1/sqrt(D); below `fraction` of that the representation has (nearly) collapsed to a point.
 */
export function isCollapsed(embeddingStd: number, dim: number, fraction = 0.1): boolean {
  return Number.isFinite(embeddingStd) && embeddingStd < fraction / Math.sqrt(dim);
}

export function residentMiB(): number {
  return process.memoryUsage().rss / (1 << 20);
}

/** The most resident memory this process has held (getrusage's maxrss). */
export function peakResidentMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Peak CUDA memory allocated so far on a 'cuda' / 'cuda:N' device (Detectron2's max_mem). */
export function deviceMemoryMiB(device: string): number {
  return cuda.memoryStats(device === 'cuda' ? undefined : Number(device.slice(5))).peakAllocated / (1 << 20);
}
