// Training curves as PNG with no dependency beyond node's zlib: an RGB raster, a 5x7 bitmap font
// for tick labels and titles, line charts, and a PNG encoder (filter 0 scanlines, deflate, CRC).
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { MetricRecord, readMetrics, METRICS_FILE } from './metrics';
import { checkOutputPath } from '../io/output_path';
import { writeFileAtomic } from '../io/temp_files';

type RGB = [number, number, number];

// 5x7 glyphs, one 5-bit row per entry (bit 4 = leftmost column). Lowercase renders as uppercase.
const FONT: Record<string, number[]> = {
  '0': [14, 17, 19, 21, 25, 17, 14], '1': [4, 12, 4, 4, 4, 4, 14], '2': [14, 17, 1, 2, 4, 8, 31],
  '3': [31, 2, 4, 2, 1, 17, 14], '4': [2, 6, 10, 18, 31, 2, 2], '5': [31, 16, 30, 1, 1, 17, 14],
  '6': [6, 8, 16, 30, 17, 17, 14], '7': [31, 1, 2, 4, 8, 8, 8], '8': [14, 17, 17, 14, 17, 17, 14],
  '9': [14, 17, 17, 15, 1, 2, 12], A: [14, 17, 17, 17, 31, 17, 17], B: [30, 17, 17, 30, 17, 17, 30],
  C: [14, 17, 16, 16, 16, 17, 14], D: [28, 18, 17, 17, 17, 18, 28], E: [31, 16, 16, 30, 16, 16, 31],
  F: [31, 16, 16, 30, 16, 16, 16], G: [14, 17, 16, 23, 17, 17, 15], H: [17, 17, 17, 31, 17, 17, 17],
  I: [14, 4, 4, 4, 4, 4, 14], J: [7, 2, 2, 2, 2, 18, 12], K: [17, 18, 20, 24, 20, 18, 17],
  L: [16, 16, 16, 16, 16, 16, 31], M: [17, 27, 21, 21, 17, 17, 17], N: [17, 17, 25, 21, 19, 17, 17],
  O: [14, 17, 17, 17, 17, 17, 14], P: [30, 17, 17, 30, 16, 16, 16], Q: [14, 17, 17, 17, 21, 18, 13],
  R: [30, 17, 17, 30, 20, 18, 17], S: [15, 16, 16, 14, 1, 1, 30], T: [31, 4, 4, 4, 4, 4, 4],
  U: [17, 17, 17, 17, 17, 17, 14], V: [17, 17, 17, 17, 17, 10, 4], W: [17, 17, 17, 21, 21, 21, 10],
  X: [17, 17, 10, 4, 10, 17, 17], Y: [17, 17, 17, 10, 4, 4, 4], Z: [31, 1, 2, 4, 8, 16, 31],
  '.': [0, 0, 0, 0, 0, 12, 12], '-': [0, 0, 0, 31, 0, 0, 0], '+': [0, 4, 4, 31, 4, 4, 0],
  '/': [0, 1, 2, 4, 8, 16, 0], ':': [0, 12, 12, 0, 12, 12, 0], '(': [2, 4, 8, 8, 8, 4, 2],
  ')': [8, 4, 2, 2, 2, 4, 8], '%': [24, 25, 2, 4, 8, 19, 3], ',': [0, 0, 0, 0, 12, 4, 8],
  '=': [0, 0, 31, 0, 31, 0, 0], '_': [0, 0, 0, 0, 0, 0, 31], ' ': [0, 0, 0, 0, 0, 0, 0],
};

/** An RGB raster with the few drawing primitives the charts need. */
export class Canvas {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, bg: RGB = [255, 255, 255]) {
    this.data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.data.set(bg, i * 3);
  }

  set(x: number, y: number, c: RGB): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.data.set(c, (y * this.width + x) * 3);
  }

  fillRect(x: number, y: number, w: number, h: number, c: RGB): void {
    for (let j = Math.max(0, Math.round(y)); j < Math.min(this.height, Math.round(y + h)); j++)
      for (let i = Math.max(0, Math.round(x)); i < Math.min(this.width, Math.round(x + w)); i++) this.data.set(c, (j * this.width + i) * 3);
  }

  /** A line `thick` pixels wide (DDA with square pen). */
  line(x0: number, y0: number, x1: number, y1: number, c: RGB, thick = 1): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    const r = (thick - 1) / 2;
    for (let i = 0; i <= n; i++) {
      const x = x0 + ((x1 - x0) * i) / n;
      const y = y0 + ((y1 - y0) * i) / n;
      if (thick <= 1) this.set(x, y, c);
      else this.fillRect(x - r, y - r, thick, thick, c);
    }
  }

  /** Text with the 5x7 font at integer `scale`; returns the width drawn. */
  text(s: string, x: number, y: number, c: RGB, scale = 2): number {
    let cx = x;
    for (const ch of s.toUpperCase()) {
      const g = FONT[ch] ?? FONT[' '];
      for (let row = 0; row < 7; row++)
        for (let col = 0; col < 5; col++) if (g[row] & (16 >> col)) this.fillRect(cx + col * scale, y + row * scale, scale, scale, c);
      cx += 6 * scale;
    }
    return cx - x;
  }

  static textWidth(s: string, scale = 2): number { return s.length * 6 * scale; }
}

// ---- PNG ----

function chunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
  return Buffer.concat([head, body, crc]);
}

/** 8-bit RGB PNG. */
export function encodePNG(c: Canvas): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(c.width, 0);
  ihdr.writeUInt32BE(c.height, 4);
  ihdr.writeUInt8(8, 8); // bit depth
  ihdr.writeUInt8(2, 9); // colour type RGB
  const stride = c.width * 3;
  const raw = Buffer.alloc((stride + 1) * c.height);
  for (let y = 0; y < c.height; y++) {
    raw[y * (stride + 1)] = 0; // filter: none
    raw.set(c.data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---- charts ----

/** 1-2-5 ticks covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

export function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(+v.toPrecision(4));
}

export interface Series { label: string; color: RGB; points: [number, number][] }

const COLORS: RGB[] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [255, 127, 14], [148, 103, 189]];

/** A line chart of one or more series against the iteration. */
export function lineChart(title: string, series: Series[], o: { width?: number; height?: number; xLabel?: string } = {}): Canvas {
  const W = o.width ?? 800;
  const H = o.height ?? 480;
  const cv = new Canvas(W, H);
  const L = 110, R = 20, T = 50, B = 60;
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  cv.text(title, L, 14, [0, 0, 0], 3);
  if (pts.length === 0) {
    cv.text('no data', L + 20, H / 2, [120, 120, 120], 2);
    return cv;
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const xt = niceTicks(Math.min(...xs), Math.max(...xs));
  const yt = niceTicks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [Math.min(xt[0], Math.min(...xs)), Math.max(xt[xt.length - 1], Math.max(...xs))];
  const [y0, y1] = [Math.min(yt[0], Math.min(...ys)), Math.max(yt[yt.length - 1], Math.max(...ys))];
  const px = (x: number): number => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number): number => H - B - ((y - y0) / (y1 - y0 || 1)) * (H - T - B);
  const grid: RGB = [225, 225, 225];
  const axis: RGB = [60, 60, 60];
  for (const y of yt) {
    cv.line(L, py(y), W - R, py(y), grid);
    const s = tickLabel(y);
    cv.text(s, L - 8 - Canvas.textWidth(s), py(y) - 7, axis);
  }
  for (const x of xt) {
    cv.line(px(x), T, px(x), H - B, grid);
    const s = tickLabel(x);
    cv.text(s, px(x) - Canvas.textWidth(s) / 2, H - B + 8, axis);
  }
  cv.line(L, T, L, H - B, axis);
  cv.line(L, H - B, W - R, H - B, axis);
  if (o.xLabel) cv.text(o.xLabel, W - R - Canvas.textWidth(o.xLabel), H - 22, axis);
  series.forEach((s) => {
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    for (let j = 1; j < p.length; j++) cv.line(px(p[j - 1][0]), py(p[j - 1][1]), px(p[j][0]), py(p[j][1]), s.color, 2);
    if (p.length === 1) cv.fillRect(px(p[0][0]) - 2, py(p[0][1]) - 2, 5, 5, s.color);
  });
  if (series.length > 1) cv.fillRect(W - R - 208, T + 2, 204, series.length * 20 + 8, [255, 255, 255]);
  series.forEach((s, i) => {
    if (series.length > 1) {
      // Legend, top right, drawn over the curves.
      const lx = W - R - 200;
      const ly = T + 8 + i * 20;
      cv.fillRect(lx, ly + 5, 24, 4, s.color);
      cv.text(s.label, lx + 32, ly, axis);
    }
  });
  return cv;
}

export interface PlotFiles { loss: string; lr: string; tau: string; throughput: string; embeddingStd: string }

/** Draws OUT/plots/{loss,lr,tau,throughput,embedding_std}.png from OUT/metrics.jsonl. */
export function plotRun(runDir: string, outDir = path.join(runDir, 'plots')): PlotFiles {
  checkOutputPath(outDir, { flag: '--out', kind: 'dir' });
  const recs: MetricRecord[] = readMetrics(path.join(runDir, METRICS_FILE));
  if (recs.length === 0) throw new Error(`${path.join(runDir, METRICS_FILE)} has no records yet (logged every --log-every iterations)`);
  fs.mkdirSync(outDir, { recursive: true });
  const pts = (f: (r: MetricRecord) => number): [number, number][] => recs.map((r) => [r.iter, f(r)]);
  const pairNames = [...new Set(recs.flatMap((r) => Object.keys(r.pairs ?? {})))];
  const lossSeries: Series[] = [{ label: 'total', color: COLORS[0], points: pts((r) => r.loss) }];
  pairNames.forEach((n, i) => lossSeries.push({ label: n, color: COLORS[(i + 1) % COLORS.length], points: recs.filter((r) => r.pairs && n in r.pairs).map((r) => [r.iter, r.pairs![n]]) }));
  const files: PlotFiles = {
    loss: path.join(outDir, 'loss.png'), lr: path.join(outDir, 'lr.png'), tau: path.join(outDir, 'tau.png'),
    throughput: path.join(outDir, 'throughput.png'), embeddingStd: path.join(outDir, 'embedding_std.png'),
  };
  const charts: [string, Canvas][] = [
    [files.loss, lineChart('loss', lossSeries, { xLabel: 'iteration' })],
    [files.lr, lineChart('learning rate', [{ label: 'lr', color: COLORS[0], points: pts((r) => r.lr) }], { xLabel: 'iteration' })],
    [files.tau, lineChart('target momentum tau', [{ label: 'tau', color: COLORS[0], points: pts((r) => r.tau) }], { xLabel: 'iteration' })],
    [files.throughput, lineChart('images/s', [{ label: 'images/s', color: COLORS[0], points: pts((r) => r.imagesPerSec) }], { xLabel: 'iteration' })],
    [files.embeddingStd, lineChart('embedding std', [{ label: 'std', color: COLORS[0], points: pts((r) => r.embeddingStd) }], { xLabel: 'iteration' })],
  ];
  for (const [f, cv] of charts) writeFileAtomic(f, encodePNG(cv));
  return files;
}
