// `soco-train env`, run as a user runs it: the report's LibTorch facts are the addon's own, and the
// codec versions those of the libraries on this machine.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../lib/torch';
import type { EnvReport } from '../lib/cli/env';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'soco-train.js');

describe('soco-train env', function () {
  this.timeout(120000);

  it('--json: versions, the LibTorch in use with CUDA/cuDNN/NCCL, torchvision ops, GPUs, threads, codecs, OS', () => {
    const r = JSON.parse(execFileSync(process.execPath, [BIN, 'env', '--json'], { encoding: 'utf8' })) as EnvReport;
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.equal(r.socoTrain.version, pkg.version);
    assert.equal(r.node.version, process.version);
    const info = torch.buildInfo();
    for (const k of ['torch', 'cuda', 'cudnn', 'nccl', 'gloo', 'cxx11Abi', 'libtorch', 'addon', 'selectedBy'] as const) assert.deepEqual(r.libtorch[k], info[k], k);
    assert.equal(r.libtorch.torchvisionError, null);
    assert.ok(r.libtorch.torchvisionLoaded && r.libtorch.torchvision && fs.existsSync(r.libtorch.torchvision));
    assert.equal(r.gpus.visible, torch.cuda.deviceCount());
    assert.ok(r.threads.intraOp >= 1);
    // The decoder's libraries, as Debian's packages name their versions (libpng's and zlib's at run time).
    assert.deepEqual(Object.keys(r.imageCodecs), ['libjpeg-turbo', 'libpng', 'libwebp', 'libdeflate', 'zlib']);
    for (const v of Object.values(r.imageCodecs)) assert.match(v, /^\d+\.\d+(\.\d+)?/);
    assert.ok(r.cpu.cores >= 1 && r.os.name.length > 0);
  });

  it('prints one labelled line per fact for a bug report', () => {
    const out = execFileSync(process.execPath, [BIN, 'env'], { encoding: 'utf8' });
    for (const label of ['soco-train', 'Node.js', 'OS', 'CPU', 'LibTorch', '  CUDA', '  NCCL', 'torchvision ops', 'GPUs', 'threads', 'image codecs'])
      assert.match(out, new RegExp(`^${label} +\\S`, 'm'), label);
    assert.match(out, new RegExp(`^LibTorch +${torch.buildInfo().torch.replace(/\./g, '\\.')} at `, 'm'));
  });
});
