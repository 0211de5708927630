// `bench: soco-step-cpu` / `soco-step-cuda`: one SoCo training step of the model: online forward +
// backward on V1 224, V2 224, V3 112 and the target forward on the same views, R50-FPN (paper
// options), K = 4 boxes per image, the symmetric -2cos loss; on the CPU batch 8 in float32, on
// CUDA batch 128 under bf16 autocast (the training default there), with peak GPU memory. Ours (lib/model) against the PyTorch
// reference network (test/reference/soco_ref.py, same images, boxes and options) in the same
// run, both with the same explicit thread count (SOCO_BENCH_THREADS, default: all cores). Steps
// alternate between the two processes (ours, ref, ours, ...) so that both see the same machine
// load; medians of SOCO_BENCH_REPS (default 3) steps after one warm-up each, in images per second.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { SoCoModel, SoCoView } from '../lib/model';
import { socoLoss } from '../lib/train/loss';
import { PYTHON, writeBundle } from '../test/reference/soco_ref';
import { PythonServer, median, report } from './util';
import type { BenchOptions } from './index';

const ROOT = path.resolve(__dirname, '..', '..');
const K = 4;
const SIZES = [224, 224, 112];
const PAIRS: [number, number][] = [[0, 1], [0, 2]];
const REPS = Number(process.env.SOCO_BENCH_REPS ?? 3);

function threads(): number {
  return Number(process.env.SOCO_BENCH_THREADS ?? (os.availableParallelism?.() ?? os.cpus().length));
}

/** Images and boxes (sizes spread over P2..P5 as selective-search boxes are), seeded. */
function makeViews(BATCH: number): { views: SoCoView[]; named: Record<string, Tensor> } {
  torch.manualSeed(0);
  const named: Record<string, Tensor> = {};
  const views = SIZES.map((s, v) => {
    const image = torch.randn([BATCH, 3, s, s]);
    const rows: number[][] = [];
    const rnd = torch.rand([BATCH * K, 4]).toArray();
    for (let r = 0; r < BATCH * K; r++) {
      const [a, b, c, d] = rnd.slice(4 * r, 4 * r + 4);
      const w = s * (0.1 + 0.85 * a);
      const h = Math.min(s, w * (0.6 + 0.8 * b));
      const x = c * (s - w);
      const y = d * (s - h);
      rows.push([Math.floor(r / K), x, y, x + w, y + h]);
    }
    const boxes = torch.tensor(rows);
    named[`image${v}`] = image;
    named[`boxes${v}`] = boxes;
    return { image, boxes };
  });
  return { views, named };
}

function loss(online: Tensor[], target: Tensor[]): Tensor {
  return socoLoss(PAIRS.map(([a, b]) => ({ name: `v${a + 1}-v${b + 1}`, onlineA: online[a], targetA: target[a], onlineB: online[b], targetB: target[b] }))).loss;
}

/** The reference as a child process that runs one timed step per request. */
class Reference extends PythonServer {
  constructor(dir: string, threads: number) {
    // PYTHON (SOCO_PYTHON): a Python with torch and torchvision (on a CUDA machine, its PyTorch's venv).
    super(path.join(ROOT, 'test', 'reference', 'soco_ref.py'), ['bench', dir, String(threads)], PYTHON);
  }
  /** [wall, cpu] seconds of one step and the peak CUDA bytes so far. */
  async step(): Promise<[number, number, number]> {
    const [wall, cpu, peak] = (await this.ask('step')).split(' ').map(Number);
    return [wall, cpu, peak];
  }
}

export async function run(opts: BenchOptions = { device: 'cpu' }): Promise<void> {
  const cuda = opts.device.startsWith('cuda');
  if (cuda && !torch.cuda.isAvailable()) throw new Error(`soco-step-cuda: --device ${opts.device} but this LibTorch sees no CUDA device`);
  const name = cuda ? 'soco-step-cuda' : 'soco-step-cpu';
  const BATCH = cuda ? 128 : 8;
  const n = threads();
  torch.setNumThreads(n);
  const { views: host, named } = makeViews(BATCH);
  const model = new SoCoModel({ arch: 'fpn', depth: 50 }).train();  // the paper's network, as the reference builds it
  let views = host;
  if (cuda) {
    model.to(opts.device);
    views = host.map((v) => ({ image: v.image.to(opts.device), boxes: v.boxes.to(opts.device) }));
  }
  const step = (): [number, number] => {
    const t0 = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    torch.tidy(() => {
      model.zeroGrad();
      const forward = (): Tensor => {
        const out = model.forward(views);
        return loss(out.online.map((t) => t.to(null, 'float32')), out.target.map((t) => t.to(null, 'float32')));
      };
      (cuda ? torch.autocast('cuda', 'bfloat16', forward) : forward()).backward();
    });
    if (cuda) torch.cuda.synchronize();
    const c = process.cpuUsage(c0);
    return [Number(process.hrtime.bigint() - t0) / 1e9, (c.user + c.system) / 1e6];
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-bench-'));
  let ref: Reference | undefined;
  try {
    writeBundle(dir, named);
    fs.writeFileSync(path.join(dir, 'request.json'), JSON.stringify({
      variant: { arch: 'fpn', depth: 50 }, views: SIZES.map((_, v) => [`image${v}`, `boxes${v}`]), pairs: PAIRS,
      device: opts.device, autocast: cuda ? 'bfloat16' : null,
    }));
    ref = new Reference(dir, n);
    const ready = await ref.line();
    if (ready !== `ready ${n}`) throw new Error(`the reference answered '${ready}', expected 'ready ${n}' (thread count)`);
    step();
    await ref.step();
    const ours: [number, number][] = [];
    const theirs: [number, number, number][] = [];
    for (let i = 0; i < REPS; i++) {
      ours.push(step());
      theirs.push(await ref.step());
    }
    const [o, r] = [median(ours.map((x) => x[0])), median(theirs.map((x) => x[0]))];
    // CPU seconds per step are printed too: on a shared machine they vary less than wall time.
    const fmt = (v: [number, number, ...number[]][]): string => v.map(([w, c]) => `${w.toFixed(2)}/${c.toFixed(1)}`).join(' ');
    console.log(`${name}: R50-FPN, batch ${BATCH}, views ${SIZES.join('/')}, K=${K}, ${cuda ? `${opts.device} bf16 autocast` : `${n} threads`}; ` +
      `wall/cpu s per step: ours ${fmt(ours)}; ref ${fmt(theirs)}; cpu-time ratio ${(median(theirs.map((x) => x[1])) / median(ours.map((x) => x[1]))).toFixed(3)}`);
    if (cuda) console.log(`${name}: peak CUDA memory of the reference ${(theirs[theirs.length - 1][2] / 2 ** 30).toFixed(2)} GiB (ours: see nvidia-smi in scripts/gpu-check.sh)`);
    report(name, BATCH / o, BATCH / r, 'img/s', true);
  } finally {
    ref?.close();
    model.zeroGrad();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  run().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
