// What this process runs: the LibTorch the addon was built against and loaded, and torchvision's
// operator library for it. `buildInfo()` is what `soco-train env` and bug reports print.
import * as fs from 'fs';
import * as path from 'path';
import { buildDir, native, packageRoot } from './native';
import { TorchError } from './tensor';

/** The build's record of its LibTorch (scripts/libtorch.js writes it when CMake configures). */
interface BuildRecord {
  via: string;
  python: string | null;
  root: string;
  version: string;
  libDir: string;
  libpython: string | null;
}

let record: BuildRecord | null | undefined;

/** The record beside the loaded addon, if it describes the LibTorch this process runs. */
function buildRecord(): BuildRecord | null {
  if (record === undefined) {
    try {
      const r = JSON.parse(fs.readFileSync(path.join(buildDir, 'libtorch.json'), 'utf8')) as BuildRecord;
      record = libtorchDir() === path.join(r.libDir, path.sep) ? r : null;
    } catch {
      record = null;
    }
  }
  return record;
}

/** The first path in this process's memory map matching `re` (group 1), or null. */
function mapped(re: RegExp): string | null {
  try {
    const m = re.exec(fs.readFileSync('/proc/self/maps', 'utf8'));
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

/** The directory of the LibTorch this process runs, or null. */
function libtorchDir(): string | null {
  return mapped(/\s(\/\S*\/)libtorch_cpu\.so[\w.]*$/m);
}

/**
 * Where torchvision's _C.so for the running LibTorch should be: SOCO_TORCHVISION_LIB, else the
 * torchvision beside a pip wheel's torch (site-packages/torch/lib -> site-packages/torchvision),
 * else Debian's python3-torchvision when the LibTorch is Debian's. A torchvision built for
 * another LibTorch is never tried: its operator registrations could abort the process.
 */
function torchvisionCandidates(): string[] {
  if (process.env.SOCO_TORCHVISION_LIB) return [process.env.SOCO_TORCHVISION_LIB];
  const dirs: string[] = [];
  const lib = libtorchDir();
  if (lib && /\/torch\/lib\/$/.test(lib)) dirs.push(path.resolve(lib, '..', '..', 'torchvision'));
  if (lib === null || lib.startsWith('/usr/lib/')) dirs.push('/usr/lib/python3/dist-packages/torchvision');
  const out: string[] = [];
  for (const dir of dirs)
    if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir).sort()) if (/^_C[.\w-]*\.so$/.test(f)) out.push(path.join(dir, f));
  return out;
}

let torchvisionLib: string | null = null;

/**
 * Loads one torchvision _C.so. PyPI's is linked against libtorch_python.so (pytorch/vision#9042)
 * although its operators use none of it: that library needs libpython's symbols, so both are
 * loaded first (the torch's own libtorch_python, the Python the build recorded).
 */
function loadTorchvisionLibrary(so: string): void {
  try {
    native.loadLibrary(so);
    return;
  } catch (e) {
    const lib = libtorchDir();
    const pythonLib = buildRecord()?.libpython;
    if (!/libtorch_python|undefined symbol: Py/.test((e as Error).message) || !lib) throw e;
    if (!pythonLib)
      throw new TorchError(`${so} needs libtorch_python.so and libpython, and this build recorded no libpython. ` +
        'Fix: build with SOCO_TORCH set to the Python whose torch you use (`SOCO_TORCH=$(which python3) npm run build:native`).', 'torchvision::roi_align');
    native.loadLibrary(pythonLib);
    native.loadLibrary(path.join(lib, 'libtorch_python.so'));
    native.loadLibrary(so);
  }
}

/** Finds and loads torchvision's operator library (it registers torchvision::roi_align). */
export function loadTorchvisionOps(): void {
  if (native.hasOp('torchvision::roi_align', '')) return;
  const candidates = torchvisionCandidates();
  const errors: string[] = [];
  for (const c of candidates) {
    try {
      loadTorchvisionLibrary(c);
      torchvisionLib = c;
      break;
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  if (!native.hasOp('torchvision::roi_align', ''))
    throw new TorchError(
      `torchvision's operator library was ${candidates.length ? `not loadable (${errors.join('; ') || 'no roi_align in it'})` : `not found for the LibTorch in ${libtorchDir() ?? 'use'}`}. ` +
      'Fix: `apt-get install python3-torchvision` (Debian LibTorch), or set SOCO_TORCHVISION_LIB to the _C.so of the ' +
      'torchvision built for your LibTorch (pip: site-packages/torchvision/_C.so).', 'torchvision::roi_align');
}

export interface BuildInfo {
  /** LibTorch version the addon was compiled against (its headers' TORCH_VERSION). */
  torch: string;
  /** CUDA runtime version compiled in ("13.0"), null for a CPU-only build. */
  cuda: string | null;
  /** cuDNN version of the CUDA LibTorch ("9.19.0"), null without CUDA or cuDNN. */
  cudnn: string | null;
  /** NCCL version compiled in (the NCCL process group), null without it. */
  nccl: string | null;
  /** c10d's Gloo process group (CPU collectives) compiled in. */
  gloo: boolean;
  /** The C++11 std::string ABI (_GLIBCXX_USE_CXX11_ABI) of the build. */
  cxx11Abi: boolean;
  /** Folder of the libtorch_cpu.so this process loaded. */
  libtorch: string | null;
  /** The addon file loaded. */
  addon: string | null;
  /** How the build picked its LibTorch (SOCO_TORCH, a python3 on PATH, Debian's libtorch-dev), when it recorded it. */
  selectedBy: string | null;
  /** The torchvision operator library: the one loaded, else the one loadTorchvisionOps() tries first; null if none is found. */
  torchvision: string | null;
  /** Whether torchvision::roi_align is registered (loadTorchvisionOps() ran, e.g. on a model's first RoIAlign). */
  torchvisionLoaded: boolean;
}

/** What this addon was built against and runs with (torch.__config__ / collect_env's LibTorch part). */
export function buildInfo(): BuildInfo {
  const b = native.buildInfo() as { torch: string; cuda: string | null; cudnn: string | null; cxx11Abi: boolean };
  return {
    ...b,
    nccl: native.dist.ncclVersion,
    gloo: native.dist.backends.gloo,
    libtorch: libtorchDir(),
    addon: mapped(new RegExp(`\\s(${packageRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/\\S*\\.node)$`, 'm')),
    selectedBy: buildRecord()?.via ?? null,
    torchvision: torchvisionLib ?? torchvisionCandidates()[0] ?? null,
    torchvisionLoaded: native.hasOp('torchvision::roi_align', ''),
  };
}
