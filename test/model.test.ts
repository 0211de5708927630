// SoCoModel structure: parameter counts of RECIPE.md, the initialisation it names, the input
// contract's errors, the EMA arithmetic, the level assignment rule shared with the loader, and
// no tensor left behind by a training step. (Numerical agreement with PyTorch: model_fidelity.)
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { Tensor, noGrad } from '../lib/torch';
import { BatchNorm } from '../lib/nn';
import { ConvNorm, FPN, SoCoModel, SoCoNetwork, assignLevels } from '../lib/model';
import { fpnLevel } from '../lib/data/views_geometry';

const M = (n: number): string => (n / 1e6).toFixed(3);

describe('SoCo model structure', function () {
  this.timeout(120_000);

  it('R50-FPN parameter counts: backbone 23.508M, FPN 3.346M, head 15.207M, projector 5.255M, predictor 2.110M', () => {
    const m = new SoCoModel({ arch: 'fpn', depth: 50 });
    const fpn = m.online.backbone as FPN;
    const backbone = fpn.bottom_up.numParameters();
    assert.equal(backbone, 23_508_032);
    assert.equal(M(fpn.numParameters() - backbone), '3.346');
    assert.equal(M(m.online.roi_heads.numParameters()), '15.207');
    assert.equal(M(m.online.projector.numParameters()), '5.255');
    assert.equal(M(m.predictor.numParameters()), '2.110');
    // The target mirrors the online network without the predictor, and takes no gradient.
    assert.equal(m.target.numParameters(), m.online.numParameters());
    assert.ok(m.target.parameters().every((p) => !p.requiresGrad));
    assert.ok(m.online.parameters().every((p) => p.requiresGrad));
  });

  it('R50-C4 parameter counts: stem..res4 + res5 head 23.508M, projector 9.450M, predictor 2.110M', () => {
    const m = new SoCoModel({ arch: 'c4', depth: 50 });
    assert.equal(m.online.backbone.numParameters() + m.online.roi_heads.numParameters(), 23_508_032);
    assert.equal(M(m.online.projector.numParameters()), '9.450');
    assert.equal(M(m.predictor.numParameters()), '2.110');
    assert.equal(m.online.roi_heads.outDim, 2048);
  });

  it("RECIPE.md init: ResNet convs normal(0, sqrt(2/(k*k*C_out))), last BN gamma of each block 0, the target a copy", () => {
    torch.manualSeed(1);
    const m = new SoCoModel({ depth: 50 });
    const body = (m.online.backbone as FPN).bottom_up;
    const conv = body.stage('res4').at(0) as unknown as { conv2: ConvNorm; conv3: ConvNorm; conv1: ConvNorm };
    const std = conv.conv2.weight.std().item();
    assert.ok(Math.abs(std / Math.sqrt(2 / (9 * 256)) - 1) < 0.02, `res4.0.conv2 std ${std}`);
    const zeroGammas = Object.entries(body.stateDict()).filter(([k]) => /conv3\.norm\.weight$/.test(k));
    assert.equal(zeroGammas.length, 16);
    assert.ok(zeroGammas.every(([, t]) => t.abs().max().item() === 0));
    assert.equal(conv.conv1.norm!.weight!.min().item(), 1);
    const r18 = new SoCoModel({ depth: 18 });
    const basic = Object.entries((r18.online.backbone as FPN).bottom_up.stateDict()).filter(([k]) => /conv2\.norm\.weight$/.test(k));
    assert.ok(basic.length === 8 && basic.every(([, t]) => t.abs().max().item() === 0), 'BasicBlock: conv2.norm gamma 0');
    const on = m.online.stateDict();
    for (const [k, t] of Object.entries(m.target.stateDict())) assert.equal(t.eq(on[k]).all().item(), 1, k);
  });

  it('updateTarget: xi <- tau*xi + (1-tau)*theta on parameters only; BN buffers untouched', () => {
    const m = new SoCoModel({ depth: 18, arch: 'c4' });
    torch.tidy(() => {
      noGrad(() => {
        for (const p of m.online.parameters()) p.add_(torch.randn(p.shape));
        for (const b of m.online.buffers()) if (b.dtype === 'float32') b.add_(1);
      });
      const xi = m.target.parameters().map((p) => p.clone());
      const theta = m.online.parameters();
      const buffers = m.target.buffers().map((b) => b.clone());
      m.updateTarget(0.9);
      m.target.parameters().forEach((p, i) => {
        const want = xi[i].mul(0.9).add(theta[i].mul(0.1));
        assert.ok(p.sub(want).abs().max().item() <= 1e-6 * Math.max(1, want.abs().max().item()));
      });
      m.target.buffers().forEach((b, i) => assert.equal(b.eq(buffers[i]).all().item(), 1));
    });
    assert.throws(() => m.updateTarget(1.5), /updateTarget: tau must be a number in \[0, 1\], got 1\.5/);
  });

  it("level assignment: the loader's rule (views_geometry.fpnLevel) at the paper thresholds", () => {
    const boxes: number[][] = [];
    const sizes = [1, 30, 47.9, 48, 48.1, 96, 96.5, 150, 192, 192.01, 224, 300];
    for (const s of sizes) boxes.push([0, 3, 5, 3 + s, 5 + s], [0, 0, 0, s * 2, s / 2]);
    const lv = torch.tidy(() => assignLevels(torch.tensor(boxes)).toArray());
    assert.deepEqual(lv, boxes.map((b) => fpnLevel([b[1], b[2], b[3], b[4]], [48, 96, 192])));
    assert.deepEqual(lv.filter((_, i) => i % 2 === 0), [0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3]);
    assert.throws(() => assignLevels(torch.zeros([3, 4])), /assignLevels: boxes must be \[R, 5\]/);
  });

  it('input contract errors name the view and the field', () => {
    const m = new SoCoModel({ depth: 18 });
    const img = torch.zeros([2, 3, 64, 64]);
    const good = torch.tensor([[0, 0, 0, 10, 10], [0, 1, 1, 20, 20], [1, 0, 0, 30, 30], [1, 2, 2, 9, 9]]);
    const views = (b: Tensor, extra: object = {}) => [{ image: img, boxes: good }, { image: img, boxes: b, ...extra }];
    assert.throws(() => m.forwardOnline([]), /views must be a non-empty array/);
    assert.throws(() => m.forwardOnline([{ image: torch.zeros([2, 1, 8, 8]), boxes: good }]), /views\[0\]\.image must be \[N, 3, H, W\], got \[2,1,8,8\]/);
    assert.throws(() => m.forwardOnline(views(torch.zeros([4, 4]))), /views\[1\]\.boxes must be \[R, 5\]/);
    assert.throws(() => m.forwardOnline(views(torch.zeros([3, 5]))), /views\[1\]\.boxes must have N\*K rows \(N = 2 images\), got 3/);
    assert.throws(() => m.forwardOnline(views(torch.zeros([6, 5]))), /views\[1\]\.boxes has K = 3 boxes per image, views\[0\] has 2/);
    const swapped = torch.tensor([[0, 0, 0, 10, 10], [1, 1, 1, 20, 20], [0, 0, 0, 30, 30], [1, 2, 2, 9, 9]]);
    assert.throws(() => m.forwardOnline(views(swapped)), /views\[1\]\.boxes row 1 has batch index 1, expected 0 \(rows are image-major, K = 2 per image\)/);
    assert.throws(() => m.forwardOnline(views(good, { levels: torch.zeros([4]) })), /views\[1\]\.levels must be an int64 Tensor \[4\], got float32 \[4\]/);
    assert.throws(() => m.forwardOnline(views(good, { levels: torch.tensor([0, 1, 4, 0], { dtype: 'int64' }) })), /levels\[2\] = 4 is not a level in 0\.\.3/);
    assert.throws(() => new SoCoModel({ arch: 'c4', poolAllLevels: true }), /poolAllLevels needs arch fpn with fpn true/);
    assert.throws(() => new SoCoNetwork({ depth: 42 as 18 }), /depth must be 18, 34, 50 or 101, got 42/);
  });

  it('a training step leaves no tensor behind and updates BN statistics in both networks', () => {
    torch.manualSeed(2);
    const m = new SoCoModel({ depth: 18 });
    const views = torch.tidy(() => {
      const b = torch.tensor([[0, 4, 4, 60, 50], [0, 0, 0, 30, 30], [1, 10, 10, 63, 63], [1, 5, 5, 20, 40]]);
      return [
        { image: torch.randn([2, 3, 64, 64]), boxes: b },
        { image: torch.randn([2, 3, 32, 32]), boxes: b.div(2).mul(torch.tensor([2, 1, 1, 1, 1])) },
      ];
    });
    const step = (): void => torch.tidy(() => {
      m.zeroGrad();
      const out = m.forward(views);
      assert.deepEqual(out.online.map((t) => t.shape), [[2, 2, 256], [2, 2, 256]]);
      assert.ok(out.target.every((t) => !t.requiresGrad));
      out.online[0].mul(out.target[1]).sum().add(out.online[1].mul(out.target[0]).sum()).backward();
      m.updateTarget(0.99);
    });
    step();
    const live = torch.liveTensors();
    for (let i = 0; i < 3; i++) step();
    m.zeroGrad();
    step();
    assert.equal(torch.liveTensors(), live, 'live tensors after 4 more steps');
    const counts = m.modules().filter((x): x is BatchNorm => x instanceof BatchNorm).map((b) => b.num_batches_tracked!.item());
    // Backbone BNs see each view once per step in each network (5 steps x 2 views), heads and MLPs too.
    assert.ok(counts.every((c) => c === 10), `num_batches_tracked ${[...new Set(counts)]}`);
  });
});
