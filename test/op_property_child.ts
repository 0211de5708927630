// Child process of test/op_property.test.ts. Calls every operator the facade exposes
// (lib/torch's exposedOps) through the addon's generic call with extreme and random values for
// each argument, then the addon's other bindings with garbage; before each call it writes the call
// to the progress file, so a death by signal names the call that killed it. Reports as JSON on
// stdout; exit code 0 is itself the proof that nothing crashed.
import * as fs from 'fs';
import * as torch from '../lib/torch';
import { Tensor, exposedOps } from '../lib/torch/tensor';
import { native } from '../lib/torch/native';
import { Rng } from '../lib/data/views_geometry';

const [progressFile, seedText] = process.argv.slice(2);
const progress = fs.openSync(progressFile, 'w');
function mark(what: string): void {
  fs.ftruncateSync(progress, 0);
  fs.writeSync(progress, what, 0);
}

const seed = Number(seedText);
const random = new Rng(seed);
const rand = (): number => random.next();
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];

// ---- values ----
// Tensors are made per call (in-place ops change them); a recipe names each in the report.
const TENSORS: Record<string, () => Tensor> = {
  'float[2,3]': () => torch.rand([2, 3]),
  'float[1,2,8,8]': () => torch.rand([1, 2, 8, 8]),
  'float[3,5] rois': () => torch.tensor([[0, 1, 1, 6, 6], [0, 0, 0, 8, 8], [0, 2, 3, 4, 7]]),
  'rois, batch index 1e5': () => torch.tensor([[1e5, 0, 0, 4, 4]]),
  'rois, batch index -5': () => torch.tensor([[-5, 0, 0, 4, 4]]),
  'rois, NaN': () => torch.tensor([[NaN, NaN, 0, 4, 4]]),
  'rois, 1e7 box': () => torch.tensor([[0, 0, 0, 1e7, 1e7]]),
  'empty [0]': () => torch.zeros([0]),
  'empty [0,5]': () => torch.zeros([0, 5]),
  '0-dim': () => torch.scalarTensor(2),
  'NaN [2,3]': () => torch.full([2, 3], NaN),
  '-inf [2,3]': () => torch.full([2, 3], -Infinity),
  '1e30 [1,1,2,2]': () => torch.full([1, 1, 2, 2], 1e30),
  'int64 2^40 [2,3]': () => torch.full([2, 3], 2 ** 40, { dtype: 'int64' }),
  'int64 -2^40 [2,3]': () => torch.full([2, 3], -(2 ** 40), { dtype: 'int64' }),
  'int64 [1,0,2,1]': () => torch.tensor([1, 0, 2, 1], { dtype: 'int64' }),
  'int32 2^30 [2,3]': () => torch.full([2, 3], 2 ** 30, { dtype: 'int32' }),
  'bool [2,3]': () => torch.ones([2, 3], { dtype: 'bool' }),
  'uint8 [2,3]': () => torch.full([2, 3], 255, { dtype: 'uint8' }),
  'float64 [3]': () => torch.rand([3], { dtype: 'float64' }),
  'float16 [2,3]': () => torch.rand([2, 3]).to(null, 'float16'),
  'non-contiguous [3,2]': () => torch.rand([2, 3]).T,
  'expanded [4,3]': () => torch.rand([1, 3]).expand(4, 3),
  'requires grad [2,3]': () => torch.rand([2, 3]).requiresGrad_(),
};
const HUGE = [2 ** 31, 2 ** 40, -(2 ** 40), 2 ** 53 - 1, -(2 ** 53 - 1), 1e300, -1e300];
const NOT_NUMBERS = [NaN, Infinity, -Infinity, 0.5, -0.5];
const WRONG_TYPES: unknown[] = [undefined, null, 'x', {}, [], true, 12345678];
const BY_KIND: Record<string, unknown[]> = {
  int: [1, 0, -1, 2, ...HUGE, ...NOT_NUMBERS],
  float: [0.5, 0, -1, 1e308, -1e308, 5e-324, NaN, Infinity, -Infinity],
  bool: [false, true],
  Scalar: [1, 0, -1, 0.5, NaN, Infinity, -Infinity, 2 ** 63, -(2 ** 63), 1e308, true],
  'int[]': [[1], [], [0], [-1], [2, 2], [1, 1, 1, 1, 1, 1, 1, 1, 1], [2 ** 40], [-(2 ** 40), 2 ** 40], [NaN], [0.5], [2 ** 53 - 1, 1], 3],
  'float[]': [[0.5], [], [NaN], [Infinity, -Infinity], [1e308, -1e308]],
  'bool[]': [[true], [], [false, true, false, true]],
  'Scalar[]': [[1], [], [NaN], [2 ** 63]],
  str: ['x', '', 'mean', 'sum', 'reflect', 'bilinear'],
  ScalarType: [6, 4, 11, 0, -1, 99, 2 ** 40],
  Layout: [0, -1, 99],
  MemoryFormat: [0, 1, -1, 99],
  Device: ['cpu', 'cuda', 'cuda:9', 'meta', 'x', ''],
  Generator: [0, 999, -1],
};

/** One schema argument: its kind (a BY_KIND key, 'Tensor' or 'Tensor[]') and whether None is allowed. */
interface Arg { name: string; kind: string; optional: boolean }

function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of s) {
    if ('([{'.includes(c)) depth++;
    if (')]}'.includes(c)) depth--;
    if (c === ',' && depth === 0) { out.push(cur.trim()); cur = ''; } else cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function parseArgs(schema: string): Arg[] {
  const inner = schema.slice(schema.indexOf('(') + 1, schema.lastIndexOf(') ->'));
  return splitTop(inner).filter((a) => a !== '*').map((a) => {
    const decl = a.split('=')[0].trim().replace(/\([^)]*\)/g, '');
    const parts = decl.split(/\s+/);
    const name = parts.pop() as string;
    let type = parts.join(' ');
    const optional = type.endsWith('?');
    type = type.replace(/\?$/, '').replace(/^SymInt/, 'int');
    const kind = /^Tensor\??\[\]$/.test(type) ? 'Tensor[]' : type === 'Tensor' ? 'Tensor'
      : /^int\[\d*\]$/.test(type) ? 'int[]' : /^float\[\d*\]$/.test(type) ? 'float[]' : /^bool\[\d*\]$/.test(type) ? 'bool[]'
        : type === 'Scalar[]' ? 'Scalar[]' : type;
    return { name, kind, optional };
  });
}

/** A value description: a tensor recipe, a list of recipes, or a plain JS value. */
type Value = { tensor: string } | { tensors: string[] } | { plain: unknown };

function variants(a: Arg): Value[] {
  const out: Value[] = WRONG_TYPES.map((plain) => ({ plain }));
  if (a.kind === 'Tensor') out.push(...Object.keys(TENSORS).map((tensor) => ({ tensor })), { plain: 1e9 }, { plain: -1 });
  else if (a.kind === 'Tensor[]') out.push({ tensors: [] }, { tensors: ['float[2,3]'] }, { tensors: ['float[2,3]', 'int64 2^40 [2,3]'] },
    { tensors: ['empty [0]', 'NaN [2,3]'] }, { tensors: ['float[1,2,8,8]', 'float16 [2,3]'] }, { plain: [1e9] }, { plain: ['x'] });
  else out.push(...(BY_KIND[a.kind] ?? []).map((plain) => ({ plain })));
  return out;
}

function base(a: Arg): Value {
  if (a.kind === 'Tensor') return { tensor: 'float[2,3]' };
  if (a.kind === 'Tensor[]') return { tensors: ['float[2,3]', 'float[2,3]'] };
  if (a.optional) return { plain: null };
  return { plain: (BY_KIND[a.kind] ?? [undefined])[0] };
}

function describe(v: Value): string {
  if ('tensor' in v) return `<${v.tensor}>`;
  if ('tensors' in v) return `[${v.tensors.map((t) => `<${t}>`).join(', ')}]`;
  return v.plain === undefined ? 'undefined' : Number.isNaN(v.plain) ? 'NaN' : JSON.stringify(v.plain) ?? String(v.plain);
}

interface Report { ops: number; calls: number; errors: number; ok: number; nonErrors: string[]; refused: string[]; seed: number; other: number; sanity: number }

function callOnce(index: number, returnKinds: string, returnsSelf: boolean, args: Value[]): 'ok' | 'error' | string {
  return torch.tidy(() => {
    const made: Tensor[] = [];
    const raw = args.map((v) => {
      if ('tensor' in v) { const t = TENSORS[v.tensor](); made.push(t); return t.id; }
      if ('tensors' in v) return v.tensors.map((r) => { const t = TENSORS[r](); made.push(t); return t.id; });
      return v.plain;
    });
    try {
      const r = native.call(index, ...raw);
      // Free the results the addon handed out (not our own inputs, which tidy frees).
      if (!returnsSelf) {
        const free = (kind: string, x: unknown): void => {
          if (kind === 't' && typeof x === 'number') native.free(x);
          if (kind === 'T' && Array.isArray(x)) x.forEach((h) => typeof h === 'number' && native.free(h));
        };
        if (returnKinds.length === 1) free(returnKinds, r);
        else if (Array.isArray(r)) returnKinds.split('').forEach((k, i) => free(k, r[i]));
      }
      return 'ok';
    } catch (e) {
      return e instanceof Error ? 'error' : `threw ${typeof e}: ${String(e)}`;
    }
  });
}

async function main(): Promise<void> {
  torch.loadTorchvisionOps();
  const report: Report = { ops: 0, calls: 0, errors: 0, ok: 0, nonErrors: [], refused: [], seed, other: 0, sanity: 0 };
  const seen = new Set<string>();
  for (const [name, overload] of exposedOps()) {
    const key = overload ? `${name}.${overload}` : name;
    if (seen.has(key)) continue;
    seen.add(key);
    if (!native.hasOp(name, overload)) continue;  // newer than this LibTorch; the facade checks before use
    let index: number;
    try {
      index = native.op(name, overload);
    } catch (e) {
      report.refused.push(`${key}: ${(e as Error).message}`);
      continue;
    }
    const [, schema, returnKinds, returnsSelf] = native.opInfo(index) as [string, string, string, boolean];
    const args = parseArgs(schema);
    report.ops++;
    const sets: Value[][] = [args.map(base)];
    // Each argument alone through all its variants, the others at their base values...
    args.forEach((a, i) => { for (const v of variants(a)) { const s = args.map(base); s[i] = v; sets.push(s); } });
    // ...then random combinations, and too many arguments.
    for (let r = 0; r < 40; r++) sets.push(args.map((a) => (rand() < 0.5 ? base(a) : pick(variants(a)))));
    sets.push([...args.map(base), { plain: 1 }]);
    for (const set of sets) {
      const what = `${key}(${set.map(describe).join(', ')})`;
      mark(what);
      report.calls++;
      const r = callOnce(index, returnKinds, returnsSelf, set);
      if (r === 'ok') report.ok++;
      else if (r === 'error') report.errors++;
      else report.nonErrors.push(`${what}: ${r}`);
    }
  }
  report.other = await otherBindings(report);
  mark('sanity');
  report.sanity = torch.tidy(() => torch.ones([2]).add(1).sum().item() as number);
  process.stdout.write(JSON.stringify(report));
}

/** The addon's other bindings with garbage (each call returns, rejects or throws an Error). */
async function otherBindings(report: Report): Promise<number> {
  const buf = new Uint8Array(64);
  const floats = (n: number, v = 0.5): Float32Array => new Float32Array(n).fill(v);
  const cases: [string, () => unknown][] = [];
  for (const src of [undefined, null, 42, '', 'x\0y', '/nonexistent.jpg', '/proc/self/status', '/', buf, new Uint8Array(0), new Float32Array(4), {}])
    for (const opts of [undefined, null, 'x', {}, { width: 5 }, { width: -1, height: 2 }, { width: 1e9, height: 1e9 }, { minWidth: NaN }, { width: 0.5, height: 0.5 }])
      cases.push([`decodeImage(${describe({ plain: src })}, ${JSON.stringify(opts)})`, () => native.decodeImage(src, opts)]);
  // A file that never ends: read up to the cap (1 GB), then an error.
  cases.push(['decodeImage(/dev/zero)', () => native.decodeImage('/dev/zero')]);
  for (const n of [undefined, 0, -1, 1.5, NaN, 1e9, 'x', 2]) cases.push([`decodeThreads(${String(n)})`, () => native.decodeThreads(n)]);
  const good: unknown[] = [floats(3 * 4 * 4), 1, 4, 4, new Float64Array(64), null, 0, 0.5, null];
  for (let i = 0; i < good.length; i++)
    for (const bad of [undefined, null, 'x', -1, 1e9, NaN, 2 ** 40, floats(1), new Float64Array(1), new Int32Array(48), floats(3 * 4 * 4, NaN)]) {
      const args = [...good];
      args[i] = bad;
      cases.push([`augmentImages(arg ${i} = ${describe({ plain: bad })})`, () => native.augmentImages(...args)]);
    }
  const rgb = new Uint8Array(8 * 8 * 3).fill(100);
  for (const [w, h] of [[8, 8], [0, 0], [-1, 8], [1e9, 1e9], [NaN, 8], [8, 9], [2 ** 31, 1]])
    for (const p of [undefined, {}, { scale: NaN }, { scale: -1, sigma: Infinity, minSize: -5 }, { scale: 1e308, sigma: 1e308, minSize: 2 ** 40 }, 'x']) {
      cases.push([`selectiveSearch(${w}x${h}, ${JSON.stringify(p)})`, () => native.selectiveSearch(rgb, w, h, p, false)]);
      cases.push([`felzenszwalb(${w}x${h}, ${JSON.stringify(p)})`, () => native.felzenszwalb(rgb, w, h, p)]);
    }
  const pending: Promise<unknown>[] = [];
  for (const [what, fn] of cases) {
    mark(what);
    report.calls++;
    try {
      const r = fn();
      if (r instanceof Promise) pending.push(r.catch((e) => { if (!(e instanceof Error)) report.nonErrors.push(`${what}: rejected with ${typeof e}`); }));
    } catch (e) {
      if (!(e instanceof Error)) report.nonErrors.push(`${what}: threw ${typeof e}`);
    }
  }
  mark('settling the asynchronous calls');
  await Promise.all(pending);
  return cases.length;
}

main().catch((e) => {
  process.stderr.write(`child failed outside the calls: ${(e as Error).stack}\n`);
  process.exitCode = 1;
});
