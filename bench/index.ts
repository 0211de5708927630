// `npm run bench [-- NAME...] [-- --device cuda]`: runs the benchmarks, each measuring soco-train and
// its reference in the same run, and printing `bench: NAME ours=V UNIT ref=V UNIT ratio=X` lines.
export interface BenchOptions { device: string }
type Bench = (opts: BenchOptions) => Promise<void>;

// name -> loader; a module is loaded only when its benchmark runs.
const benches: Record<string, () => Promise<Bench>> = {
  'op-overhead': async () => (await import('./torch')).runOpOverhead,
  conv2d: async () => (await import('./torch')).runConv2d,
  decode: async () => (await import('./decode')).run,
  'loader-host-vs-torchvision': async () => (await import('./views')).runHost,
  'views-vs-torchvision': async () => (await import('./views')).runAll,
  'selective-search': async () => (await import('./selective_search')).run,
  'soco-step-cpu': async () => (opts) => import('./model').then((m) => m.run({ ...opts, device: 'cpu' })),
  'soco-step-cuda': async () => (await import('./model')).run,
};

/** Benchmarks that need `--device cuda`: left out of a CPU run of all. */
const CUDA_ONLY = new Set(['soco-step-cuda']);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let device = 'cpu';
  const names: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--device') device = args[++i];
    else if (args[i].startsWith('--device=')) device = args[i].slice(9);
    else names.push(args[i]);
  }
  device = (await import('../lib/torch')).pickDevice(device);  // the CLI's --device parser: auto, cpu, cuda, cuda:N
  const unknown = names.filter((n) => !(n in benches));
  if (unknown.length) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; known: ${Object.keys(benches).join(', ')}`);
  const cuda = device.startsWith('cuda');
  for (const name of names.filter((n) => CUDA_ONLY.has(n) && !cuda))
    throw new Error(`${name} runs on CUDA: add --device cuda (npm run bench -- ${name} --device cuda)`);
  for (const name of names.length ? names : Object.keys(benches).filter((n) => cuda || !CUDA_ONLY.has(n))) {
    const run = await benches[name]();
    await run({ device });
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.stack : err}`);
  process.exit(1);
});
