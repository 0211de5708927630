// `npm run bench [-- NAME...] [-- --device cuda] [-- --runs N]`: runs the benchmarks, each measuring
// soco-train and its reference in the same run, and printing `bench: NAME ours=V UNIT ref=V UNIT
// ratio=X` lines. --runs N repeats the whole selection N times, each in a fresh process, then
// prints a markdown table of every line's medians and ratio range (the README's table).
import { spawn } from 'child_process';
import { median } from './util';

export interface BenchOptions { device: string }
type Bench = (opts: BenchOptions) => Promise<void>;

// name -> loader; a module is loaded only when its benchmark runs.
const benches: Record<string, () => Promise<Bench>> = {
  'op-overhead': async () => (await import('./torch')).runOpOverhead,
  conv2d: async () => (await import('./torch')).runConv2d,
  decode: async () => (await import('./decode')).run,
  'views-vs-torchvision': async () => (await import('./views')).runAuthors,
  'views-paper-vs-torchvision': async () => (await import('./views')).runPaper,
  'loader-host-vs-pil': async () => (await import('./views')).runHost,
  'selective-search': async () => (await import('./selective_search')).run,
  'soco-step-cpu': async () => (opts) => import('./model').then((m) => m.run({ ...opts, device: 'cpu' })),
  'soco-step-cuda': async () => (await import('./model')).run,
};

/** Benchmarks that need `--device cuda`: left out of a CPU run of all. */
const CUDA_ONLY = new Set(['soco-step-cuda']);

const LINE = /^bench: (\S+) ours=(\S+) (\S+) ref=(\S+) \S+ ratio=(\S+)$/;

/** Runs this script `runs` times with `args` (fresh processes), echoing them, then the table. */
async function repeat(runs: number, args: string[]): Promise<void> {
  const seen = new Map<string, { unit: string; ours: number[]; ref: number[]; ratio: number[] }>();
  for (let r = 1; r <= runs; r++) {
    console.log(`bench run ${r}/${runs}`);
    const child = spawn(process.execPath, [__filename, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { process.stdout.write(d); out += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    if (code !== 0) throw new Error(`run ${r} exited with code ${code}`);
    for (const m of out.split('\n').map((l) => LINE.exec(l)).filter((x) => x !== null)) {
      const [, name, ours, unit, ref, ratio] = m;
      const s = seen.get(name) ?? { unit, ours: [], ref: [], ratio: [] };
      s.ours.push(Number(ours));
      s.ref.push(Number(ref));
      s.ratio.push(Number(ratio));
      seen.set(name, s);
    }
  }
  const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  console.log(`\n${runs} runs, medians (ratio: median and range over the runs):\n`);
  console.log('| line | ours | ref | ratio | range |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const [name, s] of seen) {
    console.log(`| \`${name}\` | ${fmt(median(s.ours))} ${s.unit} | ${fmt(median(s.ref))} ${s.unit} | ${median(s.ratio).toFixed(2)} | ` +
      `${Math.min(...s.ratio).toFixed(2)}-${Math.max(...s.ratio).toFixed(2)} |`);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let device = 'cpu';
  let runs = 1;
  const names: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split('=', 2);
    const value = (): string => inline ?? args[++i];
    if (flag === '--device') device = value();
    else if (flag === '--runs') runs = Number(value());
    else names.push(args[i]);
  }
  if (!(Number.isInteger(runs) && runs >= 1)) throw new Error(`--runs must be a positive integer, got ${runs}`);
  device = (await import('../lib/torch')).pickDevice(device);  // the CLI's --device parser: auto, cpu, cuda, cuda:N
  const unknown = names.filter((n) => !(n in benches));
  if (unknown.length) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; known: ${Object.keys(benches).join(', ')}`);
  const cuda = device.startsWith('cuda');
  for (const name of names.filter((n) => CUDA_ONLY.has(n) && !cuda))
    throw new Error(`${name} runs on CUDA: add --device cuda (npm run bench -- ${name} --device cuda)`);
  if (runs > 1) return repeat(runs, [...names, '--device', device]);
  for (const name of names.length ? names : Object.keys(benches).filter((n) => cuda || !CUDA_ONLY.has(n))) {
    const run = await benches[name]();
    await run({ device });
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.stack : err}`);
  process.exit(1);
});
