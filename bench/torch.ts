// Tensor-core benchmarks against Python's torch in the same run (bench/torch_ref.py stays alive
// and the two sides alternate round by round, so machine load hits both alike):
//
// `op-overhead`: cost per call of a tiny op through our JS API, `a.add(b)` on 4-element float32
//   tensors including the wrapper and its dispose(), against `a.add(b)` in Python. Target: ratio
//   >= 0.67 (at most 1.5x Python's cost). Also printed: the same op inside tidy() scopes of 100
//   ops (tidy frees the results), which is how training code runs. On the CPU both sides are timed
//   by process CPU time: a tiny op never leaves the calling thread, and on a shared machine wall
//   time mostly measures the other tenants (on CUDA: wall time, synchronised).
// `conv2d`: one conv2d forward + backward (input and weight gradients), batch 8, 256 -> 256
//   channels, 56x56, 3x3, padding 1, with the same explicit thread count on both sides
//   (SOCO_BENCH_THREADS, default: all cores). Target: ratio 1.0 within noise.
//
// PYTHON (test/reference/python.ts: SOCO_PYTHON, default Debian's /usr/bin/python3 with CPU
// torch) is the reference's interpreter; for --device cuda it must be one whose torch has CUDA.
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { PYTHON } from '../test/reference/python';
import type { BenchOptions } from './index';
import { PythonServer, median, report } from './util';

const SCRIPT = path.resolve(__dirname, '..', '..', 'bench', 'torch_ref.py');
const ROUNDS = 7;
const OPS_PER_ROUND = 200000;

/** bench/torch_ref.py: every answer is a number of seconds. */
class PythonTorch extends PythonServer {
  constructor() { super(SCRIPT, [], PYTHON); }
  async seconds(cmd: string): Promise<number> { return Number(await this.ask(cmd)); }
}

function threads(): number {
  return Number(process.env.SOCO_BENCH_THREADS ?? (os.availableParallelism?.() ?? os.cpus().length));
}

function sync(device: string): void {
  if (device.startsWith('cuda')) torch.cuda.synchronize();
}

async function withPython<R>(device: string, fn: (py: PythonTorch) => Promise<R>): Promise<R> {
  const py = new PythonTorch();
  try {
    const n = threads();
    torch.setNumThreads(n);
    const theirs = await py.seconds(`setup ${device} ${n}`);
    if (theirs !== n) throw new Error(`Python runs ${theirs} threads, we run ${n}`);
    return await fn(py);
  } finally {
    py.close();
  }
}

/** Seconds per op of `a.add(b).dispose()` (explicit) or of `a.add(b)` inside tidy (scoped). */
function opRound(a: torch.Tensor, b: torch.Tensor, n: number, scoped: boolean, device: string): number {
  const once = (k: number): void => {
    if (scoped) torch.tidy(() => { for (let i = 0; i < k; i++) a.add(b); });
    else for (let i = 0; i < k; i++) a.add(b).dispose();
  };
  once(1000);
  sync(device);
  const cpu = device === 'cpu';
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  // Scopes of 100 ops, as a training step's dozens to hundreds of ops per tidy.
  if (scoped) for (let i = 0; i < n; i += 100) once(100);
  else once(n);
  sync(device);
  if (!cpu) return Number(process.hrtime.bigint() - t0) / 1e9 / n;
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6 / n;
}

export async function runOpOverhead(opts: BenchOptions): Promise<void> {
  const device = opts.device;
  await withPython(device, async (py) => {
    const a = torch.ones([4], { device });
    const b = torch.ones([4], { device });
    const ours: number[] = [];
    const scoped: number[] = [];
    const ref: number[] = [];
    const clock = device === 'cpu' ? 'cpu' : 'wall';
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(opRound(a, b, OPS_PER_ROUND, false, device));
      ref.push(await py.seconds(`op ${OPS_PER_ROUND} ${clock}`));
      scoped.push(opRound(a, b, OPS_PER_ROUND, true, device));
    }
    a.dispose();
    b.dispose();
    report('op-overhead', median(ours) * 1e6, median(ref) * 1e6, `us/op(${clock})`, false);
    report('op-overhead-tidy', median(scoped) * 1e6, median(ref) * 1e6, `us/op(${clock})`, false);
  });
}

export async function runConv2d(opts: BenchOptions): Promise<void> {
  const device = opts.device;
  await withPython(device, async (py) => {
    const reps = device.startsWith('cuda') ? 20 : 2;
    const g = new torch.Generator(0);
    const x = torch.randn([8, 256, 56, 56], { generator: g }).to(device).requiresGrad_();
    const w = torch.randn([256, 256, 3, 3], { generator: g }).mul_(0.02).to(device).requiresGrad_();
    const iteration = (): number => {
      const t0 = process.hrtime.bigint();
      torch.tidy(() => {
        const y = torch.conv2d(x, w, null, { padding: 1 });
        y.backward(torch.onesLike(y));
        x.clearGrad();
        w.clearGrad();
      });
      sync(device);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    iteration();  // warm-up: allocator, kernel selection
    await py.seconds('conv 1');
    const ours: number[] = [];
    const ref: number[] = [];
    for (let r = 0; r < 3; r++) {
      // Both sides: the median of each round's reps, then the median over rounds.
      ours.push(median(Array.from({ length: reps }, iteration)));
      ref.push(await py.seconds(`conv ${reps}`));
    }
    x.dispose();
    w.dispose();
    report('conv2d', median(ours) * 1e3, median(ref) * 1e3, `ms/iter(${threads()}thr)`, false);
  });
}

export async function run(opts: BenchOptions): Promise<void> {
  await runOpOverhead(opts);
  await runConv2d(opts);
}

if (require.main === module) {
  run({ device: process.argv[2] ?? 'cpu' }).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
