#!/usr/bin/env node
// Which LibTorch the addon is built against, and the flags for it; CMakeLists.txt and binding.gyp
// both ask this script, so both build systems take the same LibTorch. The order:
//   1. SOCO_TORCH: a LibTorch folder (include/, lib/) or a Python executable with torch;
//   2. the first `python3` on PATH whose `import torch` works;
//   3. Debian's libtorch-dev.
// A Python's torch is used the way torch.utils.cpp_extension does it: its headers and libraries,
// its C++11 ABI flag, and (for a CUDA build) the CUDA and NCCL headers beside it in site-packages
// (PyPI's nvidia-* packages) or of a CUDA toolkit (CUDA_HOME); no nvcc is needed (no .cu files).
//
//   node scripts/libtorch.js describe             the one line the install prints
//   node scripts/libtorch.js json                 the selection, as JSON
//   node scripts/libtorch.js record DIR           DIR/libtorch.json, the build's record of its choice
//                                                 (read at run time: lib/torch/build.ts); the line to stderr
//   node scripts/libtorch.js cmake DIR            the record, and DIR/libtorch.cmake (set(...) lines for CMakeLists.txt)
//   node scripts/libtorch.js include|defines|cflags|libs    for binding.gyp
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const MULTIARCH = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;

class SelectError extends Error {}

// Asks a Python about its torch; null when `import torch` fails there.
const PY_QUERY = `
import glob, json, os, sys
try:
    import torch
except Exception:
    print("null"); sys.exit(0)
info = {"python": sys.executable, "version": torch.__version__, "root": os.path.dirname(os.path.realpath(torch.__file__)),
        "abi": int(torch._C._GLIBCXX_USE_CXX11_ABI), "cuda": torch.version.cuda, "torchvision": None, "libpython": None}
# pip's torchvision _C.so is linked against libtorch_python.so, which needs libpython loaded first.
import sysconfig
lp = os.path.join(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or "")
if os.path.isfile(lp):
    info["libpython"] = lp
try:
    import torchvision
    so = sorted(glob.glob(os.path.join(os.path.dirname(os.path.realpath(torchvision.__file__)), "_C*.so")))
    info["torchvision"] = so[0] if so else None
except Exception:
    pass
print(json.dumps(info))
`;

function queryPython(python) {
  try {
    return JSON.parse(execFileSync(python, ['-c', PY_QUERY], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 120000 }));
  } catch {
    return null;
  }
}

function isExecutableFile(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function firstPythonWithTorch() {
  const seen = new Set();
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const py = path.join(dir || '.', 'python3');
    if (!isExecutableFile(py) || seen.has(fs.realpathSync(py))) continue;
    seen.add(fs.realpathSync(py));
    const info = queryPython(py);
    if (info) return { ...info, python: py };
  }
  return null;
}

function debianLibDir() {
  return [`/usr/lib/${MULTIARCH}`, '/usr/lib64', '/usr/lib'].find((d) => fs.existsSync(path.join(d, 'libtorch_cpu.so')));
}

/** The version a LibTorch's headers state ("1.13.0"; 2.x moved the numbers to torch/headeronly). */
function headerVersion(include) {
  const file = [path.join('torch', 'headeronly', 'version.h'), path.join('torch', 'csrc', 'api', 'include', 'torch', 'version.h')]
    .map((f) => path.join(include, f)).find((f) => fs.existsSync(f));
  const h = file ? fs.readFileSync(file, 'utf8') : '';
  const n = (k) => (new RegExp(`#define TORCH_VERSION_${k} (\\d+)`).exec(h) || [])[1];
  return [n('MAJOR'), n('MINOR'), n('PATCH')].join('.');
}

function firstWith(dirs, file) {
  return dirs.find((d) => fs.existsSync(path.join(d, file))) || null;
}

/**
 * The CUDA (and NCCL) headers for a CUDA LibTorch: PyPI's nvidia-* packages beside a pip torch
 * (site-packages/nvidia/<pkg>/include, CCCL under include/cccl in CUDA 13), else CUDA_HOME /
 * CUDA_PATH / /usr/local/cuda. Returns the include folders to add, and the versions they state.
 */
function cudaHeaders(t) {
  const roots = [];
  const nvidia = path.join(path.dirname(t.root), 'nvidia');
  if (fs.existsSync(nvidia)) {
    for (const pkg of fs.readdirSync(nvidia).sort()) roots.push(path.join(nvidia, pkg, 'include'));
  }
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) if (home) roots.push(path.join(home, 'include'));
  const candidates = [];
  for (const r of roots) for (const d of [r, path.join(r, 'cccl')]) if (fs.existsSync(d) && !candidates.includes(d)) candidates.push(d);
  // cuda_runtime.h needs crt/host_config.h (nvidia-cuda-crt) and cuda_fp16.h needs CCCL's
  // nv/target (nvidia-cuda-cccl): neither comes with the torch wheel's own dependencies.
  const needed = ['cuda_runtime_api.h', path.join('crt', 'host_config.h'), path.join('nv', 'target')];
  const found = needed.map((f) => firstWith(candidates, f));
  const missing = needed.filter((f, i) => !found[i]);
  if (missing.length) {
    const want = t.cuda ? `${t.cuda}.*` : 'VERSION.*';
    throw new SelectError(
      `LibTorch ${t.version} at ${t.root} is a CUDA build; compiling against it needs the CUDA headers, and ${missing.join(', ')} ` +
      `${missing.length > 1 ? 'are' : 'is'} in none of ${roots.join(', ')}. Fix: ${t.python ? `${t.python} -m pip install "cuda-toolkit[crt,cccl]==${want}" (headers only), or ` : ''}` +
      `set CUDA_HOME to a CUDA ${t.cuda || ''} toolkit.`);
  }
  const api = fs.readFileSync(path.join(found[0], 'cuda_runtime_api.h'), 'utf8');
  const cudart = Number((/#define CUDART_VERSION\s+(\d+)/.exec(api) || [])[1]);
  const ncclDir = firstWith(candidates, 'nccl.h');
  let nccl = null;
  if (ncclDir) {
    const h = fs.readFileSync(path.join(ncclDir, 'nccl.h'), 'utf8');
    const n = (k) => (new RegExp(`#define NCCL_${k}\\s+(\\d+)`).exec(h) || [])[1];
    nccl = [n('MAJOR'), n('MINOR'), n('PATCH')].join('.');
  }
  const dirs = [...new Set([...found, ...(ncclDir ? [ncclDir] : [])])];
  return { dirs, cuda: cudart ? `${Math.floor(cudart / 1000)}.${(cudart % 1000) / 10}` : t.cuda, nccl };
}

/** The LibTorch to build against (see the order at the top). */
function select() {
  let t = null;
  const env = process.env.SOCO_TORCH;
  if (env) {
    if (fs.existsSync(path.join(env, 'include', 'torch')) && fs.existsSync(path.join(env, 'lib'))) {
      t = { root: path.resolve(env), via: `SOCO_TORCH=${env}` };
    } else if (isExecutableFile(env)) {
      const info = queryPython(env);
      if (!info) throw new SelectError(`SOCO_TORCH=${env}: \`import torch\` fails in that Python. Fix: install torch there, or point SOCO_TORCH at another Python or a LibTorch folder.`);
      t = { ...info, python: env, via: `SOCO_TORCH=${env}` };
    } else {
      throw new SelectError(`SOCO_TORCH=${env} is neither a LibTorch folder (with include/torch and lib/) nor a Python executable.`);
    }
  } else {
    const info = firstPythonWithTorch();
    if (info) t = { ...info, via: `${info.python}, the first python3 on PATH with torch` };
  }
  // Debian's python3-torch is a Python face of libtorch-dev: its torch/lib links to the system's.
  const lib = t && path.join(t.root, 'lib', 'libtorch_cpu.so');
  const debian = !t || (t.python && fs.existsSync(lib) && path.dirname(fs.realpathSync(lib)) === debianLibDir());
  if (debian) {
    const libDir = debianLibDir();
    if (!libDir || !fs.existsSync('/usr/include/torch/csrc/api/include/torch/version.h'))
      throw new SelectError(`no LibTorch found: ${t ? `${t.python} has Debian's torch but libtorch-dev is not installed` : 'SOCO_TORCH is unset, no python3 on PATH imports torch, and Debian\'s libtorch-dev is not installed'}. ` +
        'Fix: `apt-get install libtorch-dev` (or run scripts/setup.sh), or set SOCO_TORCH to a Python with PyTorch or a LibTorch folder.');
    t = {
      root: '/usr', libDir, include: ['/usr/include', '/usr/include/torch/csrc/api/include'], version: headerVersion('/usr/include'),
      abi: 1, via: t ? `${t.via}: Debian's libtorch-dev` : 'Debian\'s libtorch-dev', torchvision: t ? t.torchvision : null,
      python: t ? t.python : undefined, libpython: t ? t.libpython : undefined,
    };
  } else {
    const include = path.join(t.root, 'include');
    t.include = [include, path.join(include, 'torch', 'csrc', 'api', 'include')];
    t.libDir = path.join(t.root, 'lib');
    t.version = t.version || headerVersion(include);
    if (t.abi === undefined) {
      // A LibTorch folder states its ABI in TorchConfig.cmake (pre-2.9 zips); newer ones only have the C++11 ABI.
      const cfg = path.join(t.root, 'share', 'cmake', 'Torch', 'TorchConfig.cmake');
      const m = fs.existsSync(cfg) && /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(fs.readFileSync(cfg, 'utf8'));
      t.abi = m ? Number(m[1]) : 1;
    }
  }
  t.hasCuda = fs.existsSync(path.join(t.libDir, 'libtorch_cuda.so'));
  const cuda = t.hasCuda ? cudaHeaders(t) : null;
  // Gloo's headers: the LibTorch's own, else the compiler's search path (Debian's libgloo-dev).
  const compilerPath = [process.env.CPATH, process.env.CPLUS_INCLUDE_PATH].flatMap((v) => (v ? v.split(':') : [])).filter(Boolean);
  const glooDir = firstWith([...t.include, ...compilerPath, '/usr/include'], path.join('gloo', 'algorithm.h'));
  const names = ['torch', 'torch_cpu', 'c10', ...(cuda ? ['torch_cuda', 'c10_cuda'] : [])];
  return {
    via: t.via,
    python: t.python || null,
    root: t.root,
    version: t.version,
    cxx11abi: t.abi,
    cuda: cuda ? cuda.cuda : null,
    nccl: cuda ? cuda.nccl : null,
    gloo: Boolean(glooDir),
    torchvision: t.torchvision || null,
    libpython: t.libpython || null,
    includeDirs: [...t.include, ...(cuda ? cuda.dirs : []), ...(glooDir && !t.include.includes(glooDir) ? [glooDir] : [])],
    libDir: t.libDir,
    libraries: names.map((n) => path.join(t.libDir, `lib${n}.so`)),
    defines: [...(cuda ? ['SOCO_WITH_CUDA'] : []), ...(cuda && cuda.nccl ? ['USE_C10D_NCCL'] : []), ...(glooDir ? ['USE_C10D_GLOO'] : [])],
    cflags: [`-D_GLIBCXX_USE_CXX11_ABI=${t.abi}`],
  };
}

function describe(s) {
  const what = s.cuda
    ? `CUDA ${s.cuda} compiled in, NCCL ${s.nccl ? `${s.nccl} compiled in` : 'not compiled in (no nccl.h found)'}`
    : 'CPU only (no CUDA, no NCCL)';
  return `soco-train: LibTorch ${s.version} at ${s.root} (${s.via}): ${what}${s.gloo ? ', Gloo' : ', no Gloo (install libgloo-dev)'}`;
}

function cmakeList(a) {
  return `"${a.map((x) => x.replace(/[\\"$]/g, '\\$&')).join(';')}"`;
}

/** Writes DIR/libtorch.json; returns DIR. */
function record(s, dir) {
  if (!dir) throw new Error('usage: node scripts/libtorch.js record|cmake BUILD_DIR');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'libtorch.json'), `${JSON.stringify(s, null, 2)}\n`);
  return dir;
}

function main() {
  const what = process.argv[2];
  let s;
  try {
    s = select();
  } catch (e) {
    if (!(e instanceof SelectError)) throw e;
    console.error(`soco-train: ${e.message}`);
    process.exit(1);
  }
  const out = {
    describe: () => describe(s),
    json: () => JSON.stringify(s, null, 2),
    record: () => {
      record(s, process.argv[3]);
      console.error(describe(s));  // binding.gyp keeps stdout in a variable
      return '';
    },
    cmake: () => {
      const dir = record(s, process.argv[3]);
      fs.writeFileSync(path.join(dir, 'libtorch.cmake'), [
        `set(SOCO_TORCH_INCLUDE_DIRS ${cmakeList(s.includeDirs)})`,
        `set(SOCO_TORCH_LIBRARIES ${cmakeList(s.libraries)})`,
        `set(SOCO_TORCH_DEFINES ${cmakeList(s.defines)})`,
        `set(SOCO_TORCH_CXX_FLAGS ${cmakeList(s.cflags)})`,
        '',
      ].join('\n'));
      return describe(s);
    },
    include: () => s.includeDirs.join(' '),
    defines: () => s.defines.join(' '),
    cflags: () => s.cflags.join(' '),
    libs: () => ['-Wl,--no-as-needed', ...s.libraries, `-Wl,-rpath,${s.libDir}`].join(' '),
  }[what];
  if (!out) {
    console.error('usage: node scripts/libtorch.js describe|json|record DIR|cmake DIR|include|defines|cflags|libs');
    process.exit(2);
  }
  console.log(out());
}

if (require.main === module) main();
module.exports = { select, describe };
