// Shared by the benchmarks: the one output format, and a timer.
import { execFileSync } from 'child_process';
import { SYSTEM_PYTHON } from '../test/reference/python';

/** Prints `bench: NAME ours=V UNIT ref=V UNIT ratio=X`; ratio > 1 means soco-train is better. */
export function report(name: string, ours: number, ref: number, unit: string, higherIsBetter: boolean): void {
  const ratio = higherIsBetter ? ours / ref : ref / ours;
  const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));
  console.log(`bench: ${name} ours=${fmt(ours)} ${unit} ref=${fmt(ref)} ${unit} ratio=${ratio.toFixed(3)}`);
}

/** Median seconds per call of fn over `reps` timed runs after `warmup` untimed ones. */
export async function timeIt(fn: () => unknown, reps: number, warmup = 2): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Runs an image-side reference script (PIL, OpenCV, scikit-image) with Debian's Python. */
export function python(script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(SYSTEM_PYTHON, [script, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 28 });
}
