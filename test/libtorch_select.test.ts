// scripts/libtorch.js, the build's choice of LibTorch (CMake and node-gyp both ask it): the order
// SOCO_TORCH > the first python3 on PATH with torch > Debian's libtorch-dev, what a CUDA LibTorch
// needs, and the errors that name the fix. Fake LibTorch folders and Pythons stand in for
// installations; nothing is compiled.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { itIf } from './requires';

const ROOT = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'libtorch.js');

interface Selection { via: string; root: string; version: string; cuda: string | null; nccl: string | null; defines: string[]; includeDirs: string[]; libraries: string[]; cflags: string[] }

function select(env: NodeJS.ProcessEnv): { sel?: Selection; error: string } {
  const r = spawnSync(process.execPath, [SCRIPT, 'json'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', ...env } });
  return { sel: r.status === 0 ? JSON.parse(r.stdout) as Selection : undefined, error: r.stderr };
}

describe('scripts/libtorch.js: which LibTorch the build takes', function () {
  this.timeout(120000);
  let dir: string;
  /** A LibTorch folder with version.h (2.x layout) and empty libraries; `cuda` adds libtorch_cuda.so. */
  const libtorch = (name: string, cuda: boolean): string => {
    const root = path.join(dir, name);
    fs.mkdirSync(path.join(root, 'include', 'torch', 'headeronly'), { recursive: true });
    fs.writeFileSync(path.join(root, 'include', 'torch', 'headeronly', 'version.h'),
      '#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 7\n#define TORCH_VERSION_PATCH 1\n');
    fs.mkdirSync(path.join(root, 'lib'));
    for (const l of ['torch', 'torch_cpu', 'c10', ...(cuda ? ['torch_cuda', 'c10_cuda'] : [])]) fs.writeFileSync(path.join(root, 'lib', `lib${l}.so`), '');
    return root;
  };
  /** A `python3` whose torch is the LibTorch folder `root` (it answers the query as the real one would). */
  const python = (bin: string, root: string | null): string => {
    fs.mkdirSync(bin, { recursive: true });
    const py = path.join(bin, 'python3');
    const info = root && JSON.stringify({ python: py, version: '2.7.1+cu126', root, abi: 1, cuda: '12.6', torchvision: null, libpython: null });
    fs.writeFileSync(py, `#!/bin/sh\n${info ? `echo '${info}'` : 'echo null'}\n`, { mode: 0o755 });
    return py;
  };
  /** CUDA headers as PyPI's nvidia-* packages lay them out beside site-packages/torch. */
  const nvidiaHeaders = (site: string, withCrt: boolean): void => {
    const inc = path.join(site, 'nvidia', 'cu12', 'include');
    fs.mkdirSync(path.join(inc, 'cccl', 'nv'), { recursive: true });
    fs.writeFileSync(path.join(inc, 'cuda_runtime_api.h'), '#define CUDART_VERSION 12060\n');
    fs.writeFileSync(path.join(inc, 'cccl', 'nv', 'target'), '');
    if (withCrt) {
      fs.mkdirSync(path.join(inc, 'crt'));
      fs.writeFileSync(path.join(inc, 'crt', 'host_config.h'), '');
    }
    fs.mkdirSync(path.join(site, 'nvidia', 'nccl', 'include'), { recursive: true });
    fs.writeFileSync(path.join(site, 'nvidia', 'nccl', 'include', 'nccl.h'), '#define NCCL_MAJOR 2\n#define NCCL_MINOR 26\n#define NCCL_PATCH 2\n');
  };

  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-libtorch-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('SOCO_TORCH as a LibTorch folder: its headers, libraries and version; CPU only without libtorch_cuda', () => {
    const root = libtorch('libtorch', false);
    const { sel, error } = select({ SOCO_TORCH: root });
    assert.ok(sel, error);
    assert.equal(sel.via, `SOCO_TORCH=${root}`);
    assert.equal(sel.version, '2.7.1');
    assert.equal(sel.cuda, null);
    assert.ok(!sel.defines.includes('SOCO_WITH_CUDA') && !sel.defines.includes('USE_C10D_NCCL'));
    assert.deepEqual(sel.libraries, ['torch', 'torch_cpu', 'c10'].map((l) => path.join(root, 'lib', `lib${l}.so`)));
    assert.deepEqual(sel.cflags, ['-D_GLIBCXX_USE_CXX11_ABI=1']);
  });

  it('a pip torch first on PATH: CUDA and NCCL compiled in from the nvidia-* headers beside it, no flags needed', () => {
    const site = path.join(dir, 'venv', 'lib', 'python3.11', 'site-packages');
    const root = libtorch(path.join('venv', 'lib', 'python3.11', 'site-packages', 'torch'), true);
    nvidiaHeaders(site, true);
    const py = python(path.join(dir, 'venv', 'bin'), root);
    python(path.join(dir, 'other'), null);  // a python3 without torch, earlier on PATH
    const { sel, error } = select({ PATH: `${path.join(dir, 'other')}:${path.dirname(py)}:/usr/bin:/bin` });
    assert.ok(sel, error);
    assert.match(sel.via, new RegExp(`^${py.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, the first python3 on PATH with torch`));
    assert.equal(sel.version, '2.7.1+cu126');
    assert.deepEqual([sel.cuda, sel.nccl], ['12.6', '2.26.2']);
    assert.ok(sel.defines.includes('SOCO_WITH_CUDA') && sel.defines.includes('USE_C10D_NCCL'));
    for (const d of ['cu12/include', 'cu12/include/cccl', 'nccl/include']) assert.ok(sel.includeDirs.includes(path.join(site, 'nvidia', d)), d);
    assert.ok(sel.libraries.includes(path.join(root, 'lib', 'libtorch_cuda.so')));
  });

  it('SOCO_TORCH wins over the python3 on PATH', () => {
    const folder = libtorch('libtorch', false);
    const py = python(path.join(dir, 'bin'), libtorch('pip-torch', false));
    const { sel, error } = select({ SOCO_TORCH: folder, PATH: `${path.dirname(py)}:/usr/bin:/bin` });
    assert.equal(sel?.root, folder, error);
  });

  // A CUDA toolkit in /usr/local/cuda would supply the missing header.
  itIf(fs.existsSync('/usr/local/cuda/include/crt/host_config.h') ? '/usr/local/cuda has the headers' : null,
    'a CUDA torch without all CUDA headers: the error names the pip packages to add', () => {
    const site = path.join(dir, 'venv', 'lib', 'python3.11', 'site-packages');
    const root = libtorch(path.join('venv', 'lib', 'python3.11', 'site-packages', 'torch'), true);
    nvidiaHeaders(site, false);
    const py = python(path.join(dir, 'venv', 'bin'), root);
    const { sel, error } = select({ SOCO_TORCH: py, CUDA_HOME: path.join(dir, 'no-cuda') });
    assert.equal(sel, undefined);
    assert.match(error, /is a CUDA build; compiling against it needs the CUDA headers, and crt\/host_config\.h is in none of/);
    assert.match(error, new RegExp(`Fix: ${py.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} -m pip install "cuda-toolkit\\[crt,cccl\\]==12\\.6\\.\\*"`));
  });

  it('SOCO_TORCH that is neither a LibTorch nor a Python with torch is refused, naming it', () => {
    assert.match(select({ SOCO_TORCH: path.join(dir, 'nothing') }).error, /SOCO_TORCH=.*nothing is neither a LibTorch folder .* nor a Python executable/);
    const py = python(path.join(dir, 'bin'), null);
    assert.match(select({ SOCO_TORCH: py }).error, /`import torch` fails in that Python/);
  });
});
