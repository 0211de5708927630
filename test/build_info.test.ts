// torch.buildInfo() against the PyTorch the references run (PYTHON): each lane's addon must be
// built against that same torch, so the torch 2.x lane (a CUDA wheel) proves CUDA and NCCL are
// compiled in, and the Debian lane that it is a CPU build. Also: a CUDA build keeps working on a
// machine without a GPU, with one clear error where a CUDA device is asked for.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../lib/torch';
import { buildDir } from '../lib/torch/native';
import { availableBackends } from '../lib/distributed';
import { PYTHON } from './reference/python';
import { itIf, noCuda } from './requires';

const PY_FACTS = `
import glob, json, os, torch
d = os.path.dirname(os.path.realpath(torch.__file__))
cuda = torch.version.cuda is not None
out = {"version": torch.__version__, "cuda": torch.version.cuda, "abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
       "cudnn": torch.backends.cudnn.version() if cuda else None,
       "nccl": ".".join(map(str, torch.cuda.nccl.version())) if cuda and torch.distributed.is_nccl_available() else None,
       "gloo": torch.distributed.is_gloo_available(),
       "lib": os.path.dirname(os.path.realpath(os.path.join(d, "lib", "libtorch_cpu.so")))}
try:
    import torchvision
    out["torchvision"] = sorted(glob.glob(os.path.join(os.path.dirname(os.path.realpath(torchvision.__file__)), "_C*.so")))[0]
except Exception:
    out["torchvision"] = None
print(json.dumps(out))
`;

interface PyFacts { version: string; cuda: string | null; abi: boolean; cudnn: number | null; nccl: string | null; gloo: boolean; lib: string; torchvision: string | null }

describe('torch.buildInfo() against the reference PyTorch', function () {
  let py: PyFacts;
  let info: torch.BuildInfo;

  before(function () {
    py = JSON.parse(execFileSync(PYTHON, ['-c', PY_FACTS], { encoding: 'utf8' })) as PyFacts;
    torch.loadTorchvisionOps();
    info = torch.buildInfo();
  });

  it('is built against the LibTorch the reference Python runs, and loads it', () => {
    // Debian's headers say 1.13.0 for its 1.13.1 package: compare major.minor.
    const mm = (v: string): string => v.split('.').slice(0, 2).join('.');
    assert.equal(mm(info.torch), mm(py.version), `addon ${info.torch}, ${PYTHON} has torch ${py.version}`);
    assert.equal(info.libtorch && fs.realpathSync(info.libtorch), py.lib);
    assert.equal(info.cxx11Abi, py.abi);
  });

  it('has CUDA, cuDNN and NCCL compiled in exactly where that torch is a CUDA build', () => {
    assert.equal(info.cuda, py.cuda, 'CUDA version compiled in');
    const cudnn = py.cudnn === null ? null : `${Math.floor(py.cudnn / 10000)}.${Math.floor(py.cudnn / 100) % 100}.${py.cudnn % 100}`;
    assert.equal(info.cudnn, cudnn, 'cuDNN');
    assert.equal(info.nccl, py.nccl, 'NCCL compiled in (vs torch.cuda.nccl.version())');
    assert.equal(info.gloo, py.gloo, 'Gloo');
    assert.equal(torch.buildInfo().nccl !== null, availableBackends().nccl);
  });

  it('loaded the torchvision built for that torch', () => {
    assert.ok(info.torchvisionLoaded);
    assert.equal(info.torchvision && fs.realpathSync(info.torchvision), py.torchvision);
  });

  it('names how the build picked its LibTorch', () => {
    // The record CMake wrote (scripts/libtorch.js); a prebuilt addon has none.
    const recorded = fs.existsSync(path.join(buildDir, 'libtorch.json'));
    if (recorded) assert.match(info.selectedBy ?? '', /SOCO_TORCH=|python3|libtorch-dev/);
  });

  itIf(noCuda === null ? 'a GPU is visible here' : null, 'without a GPU: CPU work runs, and asking for CUDA is one clear TorchError', () => {
    assert.equal(torch.tidy(() => torch.ones([3]).add(1).sum().item()), 6);
    const reason = info.cuda ? /no CUDA GPU is visible/ : /built without CUDA/;
    assert.throws(() => torch.zeros([2], { device: 'cuda' }), (e: Error) => e instanceof torch.TorchError && reason.test(e.message));
    assert.throws(() => torch.cuda.memoryStats(), (e: Error) => e instanceof torch.TorchError && /no CUDA GPU is visible|built without CUDA/.test(e.message));
  });

  itIf(noCuda, 'CUDA memory statistics count a cuda:0 allocation', () => {
    torch.cuda.synchronize(0);
    const before = torch.cuda.memoryStats(0);
    const x = torch.empty([1 << 20], { device: 'cuda:0' });
    const during = torch.cuda.memoryStats(0);
    assert.ok(during.allocated >= before.allocated + 4 * (1 << 20), `${during.allocated} after ${before.allocated}`);
    assert.ok(during.peakAllocated >= during.allocated && during.reserved >= during.allocated);
    x.dispose();
    torch.cuda.resetPeakMemoryStats(0);
    assert.ok(torch.cuda.memoryStats(0).peakAllocated < during.peakAllocated);
  });
});
