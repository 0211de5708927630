// TorchScript export (`soco-train export --format torchscript`): the file runs without soco-train.
// Python's torch.jit.load and a C++ program built against LibTorch alone (test/cpp/jit_forward.cc,
// compiled here in seconds against the addon's LibTorch) run forward on real photos and
// match our forward to 1e-4 relative, for R50-FPN (p2..p5), R18-C4 (res2..res5 with the RoI head's
// res5) and R18 without FPN; the module's state_dict is the checkpoint's tensors under their names.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { BatchNorm } from '../lib/nn';
import { Res5ROIHeads, SoCoNetwork, SoCoNetworkOptions } from '../lib/model';
import { decodeImage } from '../lib/data/image';
import { IMAGENET_MEAN, IMAGENET_STD } from '../lib/data/augment';
import { PYTHON } from './reference/python';
import { buildDir } from '../lib/torch/native';

const ROOT = path.resolve(__dirname, '..', '..');
const PHOTOS = ['coffee.jpg', 'flower.jpg'].map((f) => path.join(ROOT, 'test', 'fixtures', 'images', 'heldout', f));
// 150 x 200: not multiples of 32, so the FPN upsamples 5->10->19->38 (to each lateral's own size).
const H = 150;
const W = 200;

/** Both photos, resized, RGB in [0, 1] normalised as the training views: [2, 3, H, W]. */
async function photos(): Promise<Tensor> {
  const imgs = await Promise.all(PHOTOS.map((f) => decodeImage(f, { width: W, height: H })));
  return torch.tidy(() => {
    const hwc = torch.tensor(new Uint8Array(Buffer.concat(imgs.map((i) => i.data))), { shape: [imgs.length, H, W, 3] });
    const mean = torch.tensor(IMAGENET_MEAN, { shape: [1, 3, 1, 1] });
    const std = torch.tensor(IMAGENET_STD, { shape: [1, 3, 1, 1] });
    return hwc.permute(0, 3, 1, 2).to(null, 'float32').div(255).sub(mean).div(std).contiguous();
  });
}

/** Trained-looking BN state: without it (gammas of 0 and 1, statistics 0 and 1) eval mode would hide mistakes. */
function randomizeNorms(net: SoCoNetwork): void {
  torch.noGrad(() => {
    for (const m of net.modules()) {
      if (!(m instanceof BatchNorm)) continue;
      m.weight!.uniform_(0.5, 1.5);
      m.bias!.uniform_(-0.2, 0.2);
      m.running_mean!.uniform_(-0.1, 0.1);
      m.running_var!.uniform_(0.5, 1.5);
      m.num_batches_tracked!.fill_(11);
    }
  });
}

/** Our forward in eval mode: the feature maps the TorchScript module must return. */
function ourFeatures(net: SoCoNetwork, x: Tensor): Record<string, Tensor> {
  net.eval();
  return torch.noGrad(() => {
    const out = net.backbone.forward(x) as Record<string, Tensor>;
    if (net.roi_heads instanceof Res5ROIHeads) out.res5 = net.roi_heads.res5.forward(out.res4);
    return out;
  });
}

const writeF32 = (file: string, t: Tensor): void => fs.writeFileSync(file, t.contiguous().toTypedArray() as Float32Array);

/** Elementwise |a - b| <= 1e-4 (|b| + max|b|): the largest error as a fraction of that bound. */
function worst(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) / (1e-4 * (Math.abs(b[i]) + scale)));
  return w;
}

// Loads the module, runs forward on the saved images, compares with our outputs and the checkpoint.
const PY_CHECK = `
import json, sys, numpy as np, torch
model, ckpt, images, n, h, w, ours = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7]), sys.argv[7]
m = torch.jit.load(model)
x = torch.from_numpy(np.fromfile(images, dtype=np.float32).reshape(n, 3, h, w))
with torch.no_grad():
    out = m(x)
report = {"training": m.training, "outputs": {}}
for k, v in out.items():
    ref = torch.from_numpy(np.fromfile(f"{ours}/{k}.f32", dtype=np.float32)).reshape(v.shape)
    bound = 1e-4 * (ref.abs() + ref.abs().max())
    report["outputs"][k] = {"shape": list(v.shape), "worst": float(((v - ref).abs() / bound).max())}
sd = torch.load(ckpt)["online"]
mine = m.state_dict()
report["keys"] = sorted(mine)
report["equal"] = all(torch.equal(t, sd["online." + k]) for k, t in mine.items())
print(json.dumps(report))
`;

describe('TorchScript export', function () {
  this.timeout(600_000);
  let tmp: string;
  let jitForward: string;
  let x: Tensor;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-torchscript-'));
    x = await photos();
    writeF32(path.join(tmp, 'images.f32'), x);
    // The C++ user's side: a program linked against LibTorch only (the one the addon was built
    // against, from the build's record), rebuilt when its source or the addon changed.
    const src = path.join(ROOT, 'test', 'cpp', 'jit_forward.cc');
    jitForward = path.join(buildDir, 'test', 'jit_forward');
    const inputs = [src, path.join(buildDir, 'Release', 'soco_train.node')].filter((f) => fs.existsSync(f));
    if (!fs.existsSync(jitForward) || inputs.some((f) => fs.statSync(jitForward).mtimeMs < fs.statSync(f).mtimeMs)) {
      fs.mkdirSync(path.dirname(jitForward), { recursive: true });
      const lt = JSON.parse(fs.readFileSync(path.join(buildDir, 'libtorch.json'), 'utf8')) as { includeDirs: string[]; cflags: string[]; libraries: string[]; libDir: string };
      execFileSync('g++', ['-std=c++17', '-O1', ...lt.includeDirs.map((d) => `-I${d}`), ...lt.cflags, src, ...lt.libraries, `-Wl,-rpath,${lt.libDir}`, '-o', jitForward], { stdio: 'inherit' });
    }
  });
  after(() => { x.dispose(); fs.rmSync(tmp, { recursive: true, force: true }); });

  const cases: [string, Partial<SoCoNetworkOptions>, string[]][] = [
    ['R50-FPN', { arch: 'fpn', depth: 50 }, ['p2', 'p3', 'p4', 'p5']],
    ['R18-C4 (res5 from the RoI head)', { arch: 'c4', depth: 18 }, ['res2', 'res3', 'res4', 'res5']],
    ['R18 without FPN', { arch: 'fpn', depth: 18, fpn: false, head: false }, ['res2', 'res3', 'res4', 'res5']],
  ];
  cases.forEach(([name, opts, outputs], i) => {
    it(`${name}: Python's torch.jit.load and C++'s torch::jit::load give our features (1e-4 relative)`, () => {
      torch.manualSeed(20 + i);
      const net = new SoCoNetwork(opts);
      randomizeNorms(net);
      const dir = path.join(tmp, `case${i}`);
      fs.mkdirSync(dir);
      const ckpt = path.join(dir, 'last.pth');
      // The trainer's checkpoint layout (online network under 'online.').
      torch.save(ckpt, { format: 'soco-train checkpoint 1', step: 1, online: net.stateDict('online.'), config: '{}' });
      const file = path.join(dir, 'features.pt');
      const log = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'soco-train.js'), 'export', '--format', 'torchscript', '--checkpoint', ckpt, '--out', file], { encoding: 'utf8' });
      assert.match(log, new RegExp(`-> Dict\\[str, Tensor\\] ${outputs.join(', ')}`));
      assert.match(log, /torch\.jit\.load\('.*features\.pt'\) in Python/);

      const ours = ourFeatures(net, x);
      assert.deepEqual(Object.keys(ours).sort(), [...outputs].sort());
      const oursDir = path.join(dir, 'ours');
      fs.mkdirSync(oursDir);
      for (const [k, t] of Object.entries(ours)) writeF32(path.join(oursDir, `${k}.f32`), t);

      const py = JSON.parse(execFileSync(PYTHON, ['-c', PY_CHECK, file, ckpt, path.join(tmp, 'images.f32'), '2', String(H), String(W), oursDir], { encoding: 'utf8' })) as
        { training: boolean; outputs: Record<string, { shape: number[]; worst: number }>; keys: string[]; equal: boolean };
      assert.equal(py.training, false, 'saved in eval mode');
      assert.deepEqual(Object.keys(py.outputs), outputs, 'output names, in order');
      for (const k of outputs) {
        assert.deepEqual(py.outputs[k].shape, ours[k].shape, `${k} shape`);
        assert.ok(py.outputs[k].worst <= 1, `${k}: Python differs from ours by ${py.outputs[k].worst} x the 1e-4 bound`);
      }
      // Parameters and BN buffers of the feature extractor, under the checkpoint's (Detectron2's) names.
      const extractor = Object.keys(net.stateDict()).filter((k) => k.startsWith('backbone.') || (opts.arch === 'c4' && k.startsWith('roi_heads.res5.')));
      assert.deepEqual(py.keys, extractor.sort());
      assert.ok(py.equal, 'state_dict values equal the checkpoint');

      const cppOut = path.join(dir, 'cpp');
      fs.mkdirSync(cppOut);
      const lines = execFileSync(jitForward, [file, path.join(tmp, 'images.f32'), '2', '3', String(H), String(W), cppOut], { encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(lines, outputs.map((k) => `${k} ${ours[k].shape.join(' ')}`));
      for (const k of outputs) {
        const c = new Float32Array(fs.readFileSync(path.join(cppOut, `${k}.f32`)).buffer.slice(0));
        const w = worst(c, ours[k].toTypedArray() as Float32Array);
        assert.ok(w <= 1, `${k}: C++ differs from ours by ${w} x the 1e-4 bound`);
      }
      for (const t of Object.values(ours)) t.dispose();
    });
  });

  it('refuses the Detectron2-only options and names a missing checkpoint', () => {
    const bin = path.join(ROOT, 'bin', 'soco-train.js');
    const run = (args: string[]): string => {
      try {
        execFileSync(process.execPath, [bin, 'export', '--format', 'torchscript', ...args], { encoding: 'utf8', stdio: 'pipe' });
        return '';
      } catch (e) {
        return String((e as { stderr: string }).stderr);
      }
    };
    assert.match(run(['--checkpoint', 'x.pth', '--out', path.join(tmp, 'a.pt'), '--arch', 'c4']), /--arch .* does not apply to --format torchscript/);
    assert.match(run(['--checkpoint', 'x.pth', '--out', path.join(tmp, 'a.pt'), '--config-out', 'c.yaml']), /--config-out .* does not apply to --format torchscript/);
    assert.match(run(['--checkpoint', path.join(tmp, 'missing.pth'), '--out', path.join(tmp, 'a.pt')]), /--checkpoint .*missing\.pth: no such file/);
  });
});
