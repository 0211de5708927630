// Worker processes of the binding-level distributed tests (test/dist-launch.test.ts), started by
// launch() with torchrun's variables. Training itself is tested through the real CLI
// (test/dist-train.test.ts). Usage: node dist-worker.js <scenario> <outDir> [--timeout MS]
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../lib/torch';
import * as dist from '../lib/distributed';

// ---- scenarios ----

interface Args { timeout: number }

function parseArgs(rest: string[]): Args {
  const a: Args = { timeout: 30000 };
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--timeout') { a.timeout = Number(rest[i + 1]); i++; } else throw new Error(`dist-worker: unknown argument ${rest[i]}`);
  }
  return a;
}

function writeJson(outDir: string, name: string, value: unknown): void {
  fs.writeFileSync(path.join(outDir, name), JSON.stringify(value));
}

async function collectives(ctx: dist.DistContext, outDir: string): Promise<void> {
  const g = ctx.group;
  const r = ctx.rank;
  const res: Record<string, unknown> = {};
  const x = torch.tensor([r + 1, 10 * (r + 1), -r]);
  await g.allReduce(x, 'sum');
  res.sum = x.toArray();
  const y = torch.tensor([r + 1, 10 * (r + 1), -r]);
  await g.allReduce(y, 'avg');
  res.avg = y.toArray();
  const z = torch.tensor([r, 5 - r]);
  await g.allReduce(z, 'max');
  res.max = z.toArray();
  const i64 = torch.tensor([r + 1], { dtype: 'int64' });
  await g.allReduce(i64, 'sum');
  res.int64 = i64.toArray();
  const b = torch.tensor([r * 100 + 1, r * 100 + 2]);
  await g.broadcast(b, 1);
  res.broadcast = b.toArray();
  const parts = await g.allGather(torch.tensor([[r, r * r], [7, -r]]));
  res.allGather = parts.map((p) => ({ shape: p.shape, values: p.toArray() }));
  await g.barrier();
  await ctx.store.set(`hello/${r}`, `from ${r}`);
  res.store = (await ctx.store.get(`hello/${1 - r}`, 10000)).toString();
  try {
    await g.allReduce(torch.tensor([1], { dtype: 'int64' }), 'avg');
    res.avgIntError = null;
  } catch (err) {
    res.avgIntError = (err as Error).message;
  }
  // Several collectives in flight at once complete in issue order on every rank.
  const many = Array.from({ length: 5 }, (_, k) => torch.full([1000], r + k));
  await Promise.all(many.map((t) => g.allReduce(t, 'sum')));
  res.inFlight = many.map((t) => t.max().item());
  writeJson(outDir, `collectives-${r}.json`, res);
  await g.barrier();
}

async function timeout(ctx: dist.DistContext, outDir: string): Promise<void> {
  if (ctx.rank === 0) {
    const t0 = Date.now();
    let message = '';
    try {
      await ctx.group.allReduce(torch.tensor([1]), 'sum', { timeoutMs: 1500 });
    } catch (err) {
      message = (err as Error).message;
    }
    let afterwards = '';
    try {
      await ctx.group.barrier({ timeoutMs: 1000 });
    } catch (err) {
      afterwards = (err as Error).message;
    }
    writeJson(outDir, 'timeout.json', { message, elapsedMs: Date.now() - t0, failed: ctx.group.failed, afterwards });
    await ctx.store.set('rank0-done', '1');
    await ctx.store.get('rank1-ack', 20000);
  } else {
    // Never joins the all-reduce: rank 0 must give up on its own, naming itself.
    await ctx.store.get('rank0-done', 20000);
    await ctx.store.set('rank1-ack', '1');
  }
}

async function fail(ctx: dist.DistContext): Promise<void> {
  if (ctx.rank === 1) throw new Error('boom from rank 1');
  await ctx.group.barrier();
}

export async function main(argv: string[]): Promise<number> {
  const [scenario, outDir, ...rest] = argv;
  const a = parseArgs(rest);
  torch.setNumThreads(1);
  const ctx = await dist.initFromEnv({ timeoutMs: a.timeout });
  if (!ctx) throw new Error(`scenario ${scenario} needs the launcher's environment`);
  try {
    switch (scenario) {
      case 'collectives': await collectives(ctx, outDir); return 0;
      case 'timeout': await timeout(ctx, outDir); return 0;
      case 'fail': await fail(ctx); return 0;
      default: throw new Error(`dist-worker: unknown scenario '${scenario}'`);
    }
  } finally {
    ctx.destroy();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => { console.error(err.stack ?? String(err)); process.exit(1); },
  );
}
