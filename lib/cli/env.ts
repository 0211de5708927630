// `soco-train env`: what a bug report needs (as PyTorch's and Detectron2's collect_env): versions,
// the LibTorch built against and loaded, CUDA/cuDNN/NCCL, torchvision's ops, GPUs, threads,
// image codecs, OS and CPU. `--json` for machines.
import { Command } from 'commander';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BuildInfo, buildInfo, cuda, getNumThreads, loadTorchvisionOps } from '../torch';
import { packageRoot } from '../torch/native';
import { imageCodecs } from '../data/image';

export interface EnvReport {
  socoTrain: { version: string; root: string };
  node: { version: string; napi: string; uvThreadpool: string };
  os: { name: string; kernel: string; arch: string };
  cpu: { model: string; cores: number };
  libtorch: BuildInfo & { torchvisionError: string | null };
  gpus: { visible: number; nvidiaSmi: string[] | null; cudaVisibleDevices: string | null };
  threads: { intraOp: number; ompNumThreads: string | null; ompWaitPolicy: string | null };
  imageCodecs: Record<string, string>;
  /** The variables soco-train reads to pick its LibTorch, build, references and torchvision. */
  environment: Record<string, string>;
}

function osName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    if (m) return m[1];
  } catch {
    // not Linux, or no os-release: the platform name below will do
  }
  return `${os.type()} ${os.release()}`;
}

/** nvidia-smi's one line per GPU (name, driver, memory), or null where there is no nvidia-smi. */
function nvidiaSmi(): string[] | null {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index,name,driver_version,memory.total', '--format=csv,noheader'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 20000 });
    return out.split('\n').map((l) => l.trim()).filter(Boolean);
  } catch {
    return null;
  }
}

export function collectEnv(): EnvReport {
  let torchvisionError: string | null = null;
  try {
    loadTorchvisionOps();
  } catch (e) {
    torchvisionError = (e as Error).message;
  }
  const cpus = os.cpus();
  const env = (k: string): string | null => process.env[k] ?? null;
  return {
    socoTrain: { version: JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version, root: packageRoot },
    node: { version: process.version, napi: process.versions.napi ?? '?', uvThreadpool: process.env.UV_THREADPOOL_SIZE ?? '4 (default)' },
    os: { name: osName(), kernel: os.release(), arch: os.arch() },
    cpu: { model: cpus[0]?.model ?? 'unknown', cores: cpus.length },
    libtorch: { ...buildInfo(), torchvisionError },
    gpus: { visible: cuda.deviceCount(), nvidiaSmi: nvidiaSmi(), cudaVisibleDevices: env('CUDA_VISIBLE_DEVICES') },
    threads: { intraOp: getNumThreads(), ompNumThreads: env('OMP_NUM_THREADS'), ompWaitPolicy: env('OMP_WAIT_POLICY') },
    imageCodecs: imageCodecs(),
    environment: Object.fromEntries(Object.entries(process.env)
      .filter(([k]) => /^(SOCO_|NCCL_|CUDA_HOME$|CUDA_PATH$|LD_LIBRARY_PATH$|MASTER_|WORLD_SIZE$|RANK$|LOCAL_RANK$)/.test(k))
      .sort(([a], [b]) => a.localeCompare(b)) as [string, string][]),
  };
}

export function formatEnv(r: EnvReport): string {
  const t = r.libtorch;
  const rows: [string, string][] = [
    ['soco-train', `${r.socoTrain.version} (${r.socoTrain.root})`],
    ['Node.js', `${r.node.version}, N-API ${r.node.napi}, libuv threadpool ${r.node.uvThreadpool}`],
    ['OS', `${r.os.name}, kernel ${r.os.kernel}, ${r.os.arch}`],
    ['CPU', `${r.cpu.model}, ${r.cpu.cores} logical cores`],
    ['LibTorch', `${t.torch} at ${t.libtorch ?? '?'}${t.selectedBy ? ` (build picked it: ${t.selectedBy})` : ''}`],
    ['  CUDA', t.cuda ? `${t.cuda} compiled in, cuDNN ${t.cudnn ?? 'none'}` : 'not compiled in (CPU-only LibTorch)'],
    ['  NCCL', t.nccl ? `${t.nccl} compiled in` : 'not compiled in'],
    ['  Gloo', t.gloo ? 'compiled in' : 'not compiled in'],
    ['  C++11 ABI', t.cxx11Abi ? 'yes' : 'no'],
    ['  addon', t.addon ?? '?'],
    ['torchvision ops', t.torchvisionError ? `not loadable: ${t.torchvisionError}` : `${t.torchvision ?? '(registered by the caller)'}`],
    ['GPUs', `${r.gpus.visible} visible to LibTorch${r.gpus.cudaVisibleDevices !== null ? ` (CUDA_VISIBLE_DEVICES=${r.gpus.cudaVisibleDevices})` : ''}` +
      (r.gpus.nvidiaSmi ? r.gpus.nvidiaSmi.map((g) => `\n${''.padEnd(17)}${g}`).join('') : '; no nvidia-smi')],
    ['threads', `LibTorch intra-op ${r.threads.intraOp}, OMP_NUM_THREADS ${r.threads.ompNumThreads ?? 'unset'}, OMP_WAIT_POLICY ${r.threads.ompWaitPolicy ?? 'unset'}`],
    ['image codecs', Object.entries(r.imageCodecs).map(([k, v]) => `${k} ${v}`).join(', ')],
    ['environment', Object.keys(r.environment).length ? Object.entries(r.environment).map(([k, v]) => `${k}=${v}`).join('\n'.padEnd(18)) : '(no SOCO_/NCCL_/CUDA_ variables set)'],
  ];
  return rows.map(([k, v]) => `${k.padEnd(16)} ${v}`).join('\n');
}

export function registerEnvCommand(program: Command): void {
  program.command('env')
    .description('print the environment for a bug report: versions, LibTorch and CUDA/NCCL, torchvision ops, GPUs, threads, codecs, OS')
    .option('--json', 'machine-readable output')
    .action((o: { json?: boolean }) => {
      const r = collectEnv();
      console.log(o.json ? JSON.stringify(r, null, 2) : formatEnv(r));
    });
}
