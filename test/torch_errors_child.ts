// Child process of test/torch_errors.test.ts: runs the misuse battery, then throws garbage at
// every raw tensor binding, and reports as JSON on stdout. Reaching the end (exit code 0) is
// itself the proof that nothing crashed.
import { errorCases } from './torch_errors_cases';
import * as torch from '../lib/torch';
import { native } from '../lib/torch/native';

interface Outcome { name: string; threw: boolean; cls?: string; op?: string; message?: string }

async function main(): Promise<void> {
  const unhandled: string[] = [];
  process.on('unhandledRejection', (e) => unhandled.push(String(e)));
  const outcomes: Outcome[] = [];
  for (const c of errorCases) {
    try {
      c.fn();
      outcomes.push({ name: c.name, threw: false });
    } catch (e) {
      const err = e as Error & { op?: string };
      outcomes.push({ name: c.name, threw: true, cls: err instanceof Error ? err.name : typeof e, op: err.op, message: String(err.message) });
    }
  }
  // An async tidy that rejects frees its tensors and passes the error on.
  const live = torch.liveTensors();
  let asyncError = '';
  try {
    await torch.tidy(async () => {
      torch.ones([3]);
      await new Promise((r) => setImmediate(r));
      torch.ones([4]).matmul(torch.ones([5]));
    });
  } catch (e) {
    asyncError = `${(e as Error).name}: ${(e as Error).message}`;
  }
  const asyncLeak = torch.liveTensors() - live;

  // Raw bindings with garbage: each call must return or throw an Error, never abort the process.
  const garbage: unknown[][] = [[], [undefined], [null], ['x'], [{}], [-1], [1e10], [NaN], [[1, 2]], [1, 'x', {}], [0, 0, 0, 0], [0, [0, 1], 6], ['aten::add', 5], [new Int32Array([-5, 1e9, 3])], [new Float32Array(2)]];
  const bindings = ['op', 'opInfo', 'call', 'hasOp', 'fromBuffer', 'toBuffer', 'item', 'meta', 'free', 'freeMany', 'dup', 'liveCount', 'liveBytes', 'externalMemory',
    'setRequiresGrad', 'grad', 'clearGrad', 'backward', 'setGradEnabled', 'autocastState', 'setAutocast', 'manualSeed', 'newGenerator', 'defaultGenerator', 'generatorState',
    'setGeneratorState', 'generatorSeed', 'setNumThreads', 'cudaDeviceCount', 'cudaSynchronize', 'backendFlag', 'loadLibrary', 'buildInfo', 'cudaMemoryStats', 'cudaResetPeakMemoryStats'];
  let calls = 0;
  let errors = 0;
  const nonErrors: string[] = [];
  const gradMode = torch.isGradEnabled();
  for (const b of bindings) {
    for (const args of garbage) {
      calls++;
      try {
        native[b](...args);
      } catch (e) {
        errors++;
        if (!(e instanceof Error)) nonErrors.push(`${b}(${JSON.stringify(args)}) threw ${typeof e}`);
      }
    }
  }
  native.setGradEnabled(gradMode);
  const sanity = torch.tidy(() => torch.ones([2]).add(1).sum().item());
  process.stdout.write(JSON.stringify({ outcomes, asyncError, asyncLeak, fuzz: { calls, errors, nonErrors }, sanity, unhandled }));
}

main().catch((e) => {
  process.stderr.write(`child failed outside the battery: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
