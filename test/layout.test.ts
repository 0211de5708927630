// The source layout stays what readers and tools expect: no folder named `dist` under lib/ (dist/
// is every Node package's build output), and imports inside lib/ run one way (no cycles, type-only
// imports included: a cycle is a design knot even where TypeScript erases it at run time); shell
// scripts keep their run bit.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..', '..');
const LIB = path.join(ROOT, 'lib');

function walk(dir: string, out: { files: string[]; dirs: string[] } = { files: [], dirs: [] }): { files: string[]; dirs: string[] } {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      out.dirs.push(p);
      walk(p, out);
    } else if (p.endsWith('.ts')) {
      out.files.push(p);
    }
  }
  return out;
}

// import/export ... from './x', side-effect import './x', import('./x'), require('./x').
const RELATIVE_IMPORT = /(?:\b(?:import|export)\s+(?:[^'";]*?\s+from\s+)?|\bimport\s*\(\s*|\brequire\s*\(\s*)['"](\.{1,2}\/[^'"]*|\.{1,2})['"]/g;

/** Each .ts file under `root` -> the .ts files it imports (relative specifiers resolved as Node/tsc do). */
function importGraph(root: string): Map<string, string[]> {
  const files = walk(root).files;
  const resolve = (from: string, spec: string): string | null => {
    const base = path.resolve(path.dirname(from), spec);
    return [`${base}.ts`, path.join(base, 'index.ts')].find((c) => fs.existsSync(c)) ?? null;
  };
  return new Map(files.map((f) => {
    const text = fs.readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    const deps = [...text.matchAll(RELATIVE_IMPORT)].map((m) => resolve(f, m[1]));
    return [f, [...new Set(deps.filter((d): d is string => d !== null))]];
  }));
}

/** Every cycle a depth-first walk meets, as 'a.ts -> b.ts -> a.ts' (paths relative to root). */
function importCycles(root: string): string[] {
  const graph = importGraph(root);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === 'open') cycles.push([...stack.slice(stack.indexOf(m)), m].map((p) => path.relative(root, p)).join(' -> '));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}

describe('source layout', () => {
  it('no folder named dist under lib/', () => {
    const named = walk(LIB).dirs.filter((d) => path.basename(d) === 'dist');
    assert.deepEqual(named.map((d) => path.relative(LIB, d)), []);
  });

  it('the import walk finds every kind of relative import, and cycles through index files', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-layout-'));
    try {
      fs.mkdirSync(path.join(dir, 'pkg'));
      fs.writeFileSync(path.join(dir, 'a.ts'), "import { b } from './b';\nimport type { T } from './pkg';\n");
      fs.writeFileSync(path.join(dir, 'b.ts'), "// import { a } from './a';\nexport const b = 1;\nexport * from './c';\n");
      fs.writeFileSync(path.join(dir, 'c.ts'), "import './d';\n");
      fs.writeFileSync(path.join(dir, 'd.ts'), "const x = require('./e');\n");
      fs.writeFileSync(path.join(dir, 'e.ts'), "export const e = () => import('./pkg/y');\n");
      fs.writeFileSync(path.join(dir, 'pkg', 'y.ts'), 'export const y = 2;\n');
      fs.writeFileSync(path.join(dir, 'pkg', 'index.ts'), "export { x } from './x';\n");
      fs.writeFileSync(path.join(dir, 'pkg', 'x.ts'), "import { a } from '../a';\nexport const x = a;\n");
      const g = importGraph(dir);
      const deps = (f: string): string[] => g.get(path.join(dir, f))!.map((p) => path.relative(dir, p)).sort();
      assert.deepEqual(deps('a.ts'), ['b.ts', path.join('pkg', 'index.ts')]);
      assert.deepEqual(deps('b.ts'), ['c.ts'], 'commented-out imports do not count');
      assert.deepEqual([deps('c.ts'), deps('d.ts'), deps('e.ts')], [['d.ts'], ['e.ts'], [path.join('pkg', 'y.ts')]]);
      assert.deepEqual(importCycles(dir), ['a.ts -> pkg/index.ts -> pkg/x.ts -> a.ts']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no import cycles in lib/', () => {
    const graph = importGraph(LIB);
    // The walk sees the real imports (a regex that matched nothing would pass vacuously).
    assert.ok(graph.get(path.join(LIB, 'train', 'trainer.ts'))!.includes(path.join(LIB, 'train', 'config.ts')));
    assert.ok([...graph.values()].reduce((n, d) => n + d.length, 0) > 100);
    assert.deepEqual(importCycles(LIB), []);
  });

  it('every shell script under scripts/ is executable, as the docs run them (scripts/gpu-check.sh prepare)', () => {
    const scripts = fs.readdirSync(path.join(ROOT, 'scripts')).filter((f) => f.endsWith('.sh'));
    assert.ok(scripts.includes('gpu-check.sh'));
    assert.deepEqual(scripts.filter((f) => !(fs.statSync(path.join(ROOT, 'scripts', f)).mode & 0o111)), []);
  });
});
