// Garbage collection on demand for tests that count live tensors across awaits: there, the GC
// backstop (lib/torch/scope.ts) may free earlier tests' dropped wrappers in the middle of the
// count, so such a test lets them go first.
import * as v8 from 'v8';
import * as vm from 'vm';
import * as torch from '../lib/torch';

/** V8's gc(), exposed at run time (mocha runs without --expose-gc). */
export function gcNow(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Collects garbage until `done()` or, failing that, until the live-tensor count has not moved for
 * five polls. V8 posts FinalizationRegistry cleanup as a platform task that Node runs when it gets
 * to it, so this polls on timers (up to ~5 s) rather than counting turns. */
export async function collect(gc: () => void, done: () => boolean): Promise<void> {
  for (let i = 0, still = 0, last = -1; i < 100 && !done() && still < 5; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
    const n = torch.liveTensors();
    still = n === last ? still + 1 : 0;
    last = n;
  }
}

/** The live-tensor count once earlier tests' garbage is collected: a baseline that only this
 * test's tensors move. */
export async function settledLiveTensors(): Promise<number> {
  await collect(gcNow(), () => false);
  return torch.liveTensors();
}
