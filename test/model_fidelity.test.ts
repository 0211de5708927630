// SoCoModel against the PyTorch reference (test/reference/soco_ref.py, torchvision.ops.roi_align),
// which builds the network from RECIPE.md's numbers (MLP sizes, level thresholds, RoI sizes), told
// only the variant (depth, arch, Table 4's ablations): the same weights (the online detector read
// from our Detectron2 export) and inputs, one training-mode step: embeddings of both networks, the
// loss (lib/train/loss's socoLoss), every online and predictor gradient, the BN buffers after the
// step and the target after the EMA update agree element by element as torch.allclose(rtol, atol)
// (float32, CPU, one thread on both sides). ResNet-18 keeps most cases fast; one ResNet-50 case
// runs the full-size network forward and backward.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { Tensor, noGrad } from '../lib/torch';
import { BatchNorm } from '../lib/nn';
import { SoCoModel, SoCoModelOptions, SoCoView, exportDetectron2 } from '../lib/model';
import { socoLoss } from '../lib/train/loss';
import { closeness, python, readBundle, writeBundle } from './reference/soco_ref';

// torch.testing.assert_close's float32 tolerances, element by element.
const RTOL = 1.3e-6;
const ATOL = 1e-5;
// A gradient that is zero in exact arithmetic: rounding noise, as a share of its weight's gradient.
const ZERO_TOL = 1e-4;
const ZERO_GRAD = /(projector\.linear[12]|predictor\.linear1)\.bias$/;

/** What a case varies; everything else (MLPs, thresholds, RoI sizes) is the paper's on both sides. */
type Variant = Pick<SoCoModelOptions, 'depth'> & Partial<Pick<SoCoModelOptions, 'arch' | 'fpn' | 'head' | 'scaleAware' | 'singleLevel' | 'poolAllLevels'>>;

interface Case {
  name: string;
  variant: Variant;
  /** [image name, boxes name] per view; views naming the same image share it. */
  views: [string, string][];
  pairs: [number, number][];
  backward: boolean;
  /** Send only the online network; the reference copies it into the target. */
  targetFromOnline: boolean;
  inputs: Record<string, Tensor>;
}

// Boxes [x1, y1, x2, y2] per image in a 224 view: sizes sqrt(w*h) of about 32, 75, 159 and 221
// reach P2..P5; a V3 at 112 halves them (P2, P2, P3, P4), so every level is exercised.
const V1_BOXES = [
  [[10, 12, 40, 44], [30, 20, 110, 90], [5, 8, 160, 170], [0, 1, 223, 220]],
  [[100, 100, 140, 125], [40, 60, 120, 130], [60, 10, 200, 200], [2, 3, 222, 224]],
];
const V2_BOXES = [
  [[20, 30, 60, 64], [50, 40, 120, 130], [30, 20, 200, 190], [4, 0, 224, 210]],
  [[150, 150, 200, 190], [10, 100, 90, 180], [40, 30, 210, 180], [0, 0, 220, 219]],
];

function boxTensor(perImage: number[][][], scale = 1): Tensor {
  const rows: number[][] = [];
  perImage.forEach((boxes, n) => boxes.forEach((b) => rows.push([n, ...b.map((v) => v * scale)])));
  return torch.tensor(rows);
}

/** Non-trivial BN state (the zero-init gammas would hide most gradients) and a target != online. */
function randomize(model: SoCoModel, targetFromOnline: boolean): void {
  noGrad(() => {
    for (const m of model.modules()) {
      if (!(m instanceof BatchNorm)) continue;
      m.weight!.uniform_(0.5, 1.5);
      m.bias!.uniform_(-0.2, 0.2);
      m.running_mean!.uniform_(-0.1, 0.1);
      m.running_var!.uniform_(0.5, 1.5);
      m.num_batches_tracked!.fill_(7);
    }
    if (targetFromOnline) model.resetTarget();
    else for (const p of model.target.parameters()) p.add_(torch.tidy(() => torch.randn(p.shape).mul(0.01)));
  });
}

function viewsOf(c: Case): SoCoView[] {
  return c.views.map(([img, boxes]) => ({ image: c.inputs[img], boxes: c.inputs[boxes] }));
}

const TAU = 0.99;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-model-'));

function prepare(c: Case, model: SoCoModel): string {
  const dir = path.join(tmp, c.name.replace(/\W+/g, '_'));
  fs.mkdirSync(dir, { recursive: true });
  // The reference reads the online detector (backbone, roi_heads) from our Detectron2 export, as
  // Detectron2 would; the projector, predictor and target travel in the bundle. (The no-FPN
  // ablation's export is re-parented for Detectron2's R-FPN, so that case sends the bundle only.)
  const sd = model.stateDict();
  const detector = Object.keys(sd).filter((k) => /^online\.(backbone|roi_heads)\./.test(k));
  const exp = exportDetectron2(model).checkpoint;
  const plainDump = Object.keys(exp.model).length === detector.length && detector.every((k) => exp.model[k.slice(7)] === sd[k]);
  const exportFile = plainDump ? path.join(dir, 'online.pth') : undefined;
  if (exportFile) torch.save(exportFile, { ...exp });
  const state: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(sd)) {
    if (c.targetFromOnline && k.startsWith('target.')) continue;
    if (exportFile && detector.includes(k)) continue;
    state[`state.${k}`] = v;
  }
  writeBundle(path.join(dir, 'in'), { ...c.inputs, ...state });
  const request = {
    variant: c.variant, views: c.views, pairs: c.pairs, backward: c.backward, threads: 1, export: exportFile,
    targetFromOnline: c.targetFromOnline, ...(c.backward ? { tau: TAU } : {}),
  };
  fs.writeFileSync(path.join(dir, 'in', 'request.json'), JSON.stringify(request));
  return dir;
}

function makeCases(): Case[] {
  torch.manualSeed(11);
  const img = (n: number, s: number): Tensor => torch.randn([n, 3, s, s]);
  const v1 = img(2, 224), v2 = img(2, 224), v3 = img(2, 112);
  const b1 = boxTensor(V1_BOXES), b2 = boxTensor(V2_BOXES), b3 = boxTensor(V2_BOXES, 0.5);
  // A second box set on V1 (the authors' layout: V1-V2 and V1-V3 sample their own boxes).
  const b1b = boxTensor(V1_BOXES.map((im) => im.slice().reverse()));
  const fpnInputs = { v1, v2, v3, b1, b2, b3, b1b };
  return [
    { name: 'R18-FPN paper (V1, V2, V3)', variant: { depth: 18 }, views: [['v1', 'b1'], ['v2', 'b2'], ['v3', 'b3']],
      pairs: [[0, 1], [0, 2]], backward: true, targetFromOnline: false, inputs: fpnInputs },
    { name: 'R18-C4 (V1, V2)', variant: { arch: 'c4', depth: 18 }, views: [['v1', 'b1'], ['v2', 'b2']],
      pairs: [[0, 1]], backward: true, targetFromOnline: false, inputs: { v1, v2, b1, b2 } },
    { name: 'R18-FPN poolAllLevels, V1 shared by two box sets', variant: { depth: 18, poolAllLevels: true },
      views: [['v1', 'b1'], ['v2', 'b2'], ['v1', 'b1b'], ['v3', 'b3']], pairs: [[0, 1], [2, 3]],
      backward: true, targetFromOnline: false, inputs: fpnInputs },
    { name: 'R18 no FPN, no head (RoIAlign on C5, pool + MLP)', variant: { depth: 18, fpn: false, head: false },
      views: [['v1', 'b1'], ['v2', 'b2']], pairs: [[0, 1]], backward: true, targetFromOnline: false, inputs: { v1, v2, b1, b2 } },
    { name: 'R18-FPN head, no scale-aware (all on P3)', variant: { depth: 18, scaleAware: false, singleLevel: 1 },
      views: [['v1', 'b1'], ['v3', 'b3']], pairs: [[0, 1]], backward: true, targetFromOnline: false, inputs: { v1, v3, b1, b3 } },
    { name: 'R50-FPN forward and backward (V1 160, V3 96)', variant: { depth: 50 }, views: [['r1', 'rb1'], ['r3', 'rb3']],
      pairs: [[0, 1]], backward: true, targetFromOnline: true,
      inputs: { r1: img(1, 160), r3: img(1, 96), rb1: boxTensor([V1_BOXES[0]], 160 / 224), rb3: boxTensor([V2_BOXES[0]], 96 / 224) } },
  ];
}

describe('SoCoModel vs the PyTorch reference', function () {
  this.timeout(600_000);
  let prevThreads = 1;
  const cases = makeCases();
  const models = new Map<Case, SoCoModel>();
  const dirs = new Map<Case, string>();

  before(() => {
    prevThreads = torch.getNumThreads();
    torch.setNumThreads(1);
    const args: string[] = [];
    cases.forEach((c, i) => {
      torch.manualSeed(100 + i);
      const m = new SoCoModel(c.variant);
      randomize(m, c.targetFromOnline);
      models.set(c, m);
      const d = prepare(c, m);
      dirs.set(c, d);
      args.push(path.join(d, 'in'), path.join(d, 'out'));
    });
    python(['run', ...args]);
  });

  after(() => {
    torch.setNumThreads(prevThreads);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const c of cases) {
    it(c.name, () => {
      const model = models.get(c)!;
      const ref = readBundle(path.join(dirs.get(c)!, 'out'));
      const worst: [string, number][] = [];
      const check = (name: string, ours: Tensor, theirs: Tensor | undefined): void => {
        assert.ok(theirs, `reference has no ${name}`);
        const e = closeness(ours, theirs, RTOL, ATOL);
        worst.push([name, e.worst]);
        assert.ok(e.worst <= 1, `${c.name}: ${name}: an element is ${e.ours} here, ${e.theirs} in PyTorch (${e.worst.toExponential(2)} x the tolerance ${ATOL} + ${RTOL} |b|)`);
      };
      torch.tidy(() => {
        model.train();
        const views = viewsOf(c);
        const out = c.backward ? model.forward(views) : noGrad(() => model.forward(views));
        out.online.forEach((t, i) => check(`online.${i}`, t, ref[`online.${i}`]));
        out.target.forEach((t, i) => check(`target.${i}`, t, ref[`target.${i}`]));
        if (c.backward) {
          model.zeroGrad();
          const { loss } = socoLoss(c.pairs.map(([a, b]) => ({
            name: `v${a + 1}-v${b + 1}`, onlineA: out.online[a], targetA: out.target[a], onlineB: out.online[b], targetB: out.target[b],
          })));
          check('loss', loss.reshape(1), ref.loss);
          loss.backward();
          const params = [...model.online.namedParameters('online'), ...model.predictor.namedParameters('predictor')];
          assert.equal(params.length, Object.keys(ref).filter((k) => k.startsWith('grad.')).length, 'gradient count');
          for (const [n, p] of params) {
            const g = p.grad ?? torch.zeros(p.shape);
            if (ZERO_GRAD.test(n)) {
              // A bias whose only path to the loss is through a training-mode BN that removes it
              // (the MLPs' linear1; the online projector's linear2, read only by the predictor's
              // linear1 + BN) has a gradient that is zero in exact arithmetic, rounding noise on both
              // sides. Check it is numerically zero against the same layer's weight gradient.
              const w = ref[`grad.${n.replace(/bias$/, 'weight')}`].abs().max().item();
              for (const [side, t] of [['ours', g], ['reference', ref[`grad.${n}`]]] as const) {
                const e = t.abs().max().item() / w;
                assert.ok(e <= ZERO_TOL, `${c.name}: ${side} gradient of ${n} should vanish, is ${e.toExponential(2)} of its weight's`);
              }
            } else {
              check(`grad of ${n}`, g, ref[`grad.${n}`]);
            }
          }
        }
        for (const [n, b] of Object.entries(model.stateDict())) {
          if (!/running_|num_batches_tracked/.test(n) || (c.targetFromOnline && n.startsWith('target.'))) continue;
          check(`buffer ${n}`, b, ref[`buffer.${n}`]);
        }
        if (c.backward) {
          model.updateTarget(TAU);
          for (const [n, p] of model.target.namedParameters('target')) check(`EMA ${n}`, p, ref[`ema.${n}`]);
        }
      });
      for (const t of Object.values(ref)) t.dispose();
      worst.sort((a, b) => b[1] - a[1]);
      console.log(`      ${worst.length} tensors, the furthest ${worst[0][0]} at ${worst[0][1].toExponential(2)} of the tolerance`);
    });
  }
});
