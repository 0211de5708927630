// Runs test/reference/train_ref.py (Debian's /usr/bin/python3 with torch) on inputs built here, so
// the training maths is checked against PyTorch computing the same thing on the same numbers.
import { execFileSync } from 'child_process';
import * as path from 'path';
import { PYTHON } from './python';

export { PYTHON };
const SCRIPT = path.resolve(__dirname, '..', '..', '..', 'test', 'reference', 'train_ref.py');

export function pythonReference<T>(request: object): T {
  const out = execFileSync(PYTHON, [SCRIPT], { input: JSON.stringify(request), encoding: 'utf8', maxBuffer: 1 << 26 });
  return JSON.parse(out) as T;
}

/** Deterministic normal-ish numbers (mulberry32 + Box-Muller) for test inputs. */
export function randomValues(seed: number, n: number, scale = 1): number[] {
  let s = seed >>> 0;
  const u = (): number => {
    let x = (s = (s + 0x6d2b79f5) >>> 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return (((x ^ (x >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
  // Round-trip through float32 so both sides start from identical values.
  return Array.from(Float32Array.from(out));
}

/** max |a - b| / max(|b|, floor), elementwise. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  return m;
}
