// Detectron2 export: what Python reads back. The R50-FPN and R50-C4 exports (.pth through
// torch.load(weights_only=True), .pkl through Detectron2's pickle.load(encoding='latin1')) hold
// exactly the keys and shapes of Detectron2's models (test/reference/detectron2-keys-*.tsv, taken
// from Detectron2), with our values, every one of them (the raw bytes of each tensor hashed on
// both sides); the CLI exports a training checkpoint; the shipped YAML configs carry the authors'
// fine-tuning settings.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { Tensor } from '../lib/torch';
import { SoCoModel, detectron2Pickle, detectron2Yaml, exportDetectron2 } from '../lib/model';
import { PYTHON, SOCO_REF } from './reference/soco_ref';
import { SYSTEM_PYTHON } from './reference/python';

const ROOT = path.resolve(__dirname, '..', '..');
const tsv = (arch: string): string => path.join(ROOT, 'test', 'reference', `detectron2-keys-${arch}.tsv`);
type Report = Record<string, Record<string, [string, number[], string]>>;

function checkInPython(arch: string, files: string[]): Report {
  return JSON.parse(execFileSync(PYTHON, [SOCO_REF, 'check-export', tsv(arch), ...files], { encoding: 'utf8', maxBuffer: 1 << 26 })) as Report;
}

/** sha256 of the tensor's values as little-endian bytes (as the reference hashes numpy's). */
function digest(t: Tensor): string {
  const a = t.toTypedArray();
  return createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

function assertSameValues(report: Report, file: string, model: Record<string, Tensor>): void {
  const got = report[file];
  assert.deepEqual(Object.keys(got).sort(), Object.keys(model).sort(), `${file}: key set`);
  for (const [k, t] of Object.entries(model)) {
    const [, shape, sha] = got[k];
    assert.deepEqual(shape, t.shape, `${file}: ${k} shape`);
    assert.equal(sha, digest(t), `${file}: ${k} holds other values than the checkpoint's`);
  }
}

describe('Detectron2 export', function () {
  this.timeout(300_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-export-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const arch of ['fpn', 'c4'] as const) {
    it(`R50-${arch.toUpperCase()}: every Detectron2 key with its shape, nothing else, in .pth and .pkl`, () => {
      torch.manualSeed(3);
      const model = new SoCoModel({ arch, depth: 50 });
      const exp = exportDetectron2(model);
      assert.equal(exp.arch, arch);
      // Only the online network's detector part, and its own tensors.
      assert.equal(exp.checkpoint.model['roi_heads.' + (arch === 'fpn' ? 'box_head.fc1.weight' : 'res5.0.conv1.weight')],
        model.online.roi_heads.stateDict()[arch === 'fpn' ? 'box_head.fc1.weight' : 'res5.0.conv1.weight']);
      const pth = path.join(tmp, `${arch}.pth`);
      const pkl = path.join(tmp, `${arch}.pkl`);
      torch.save(pth, { ...exp.checkpoint });
      fs.writeFileSync(pkl, detectron2Pickle(exp.checkpoint));
      const report = checkInPython(arch, [pth, pkl]);
      assertSameValues(report, pth, exp.checkpoint.model);
      assertSameValues(report, pkl, exp.checkpoint.model);
    });
  }

  it('re-parents stages for the other architecture and says what is left out', () => {
    const model = new SoCoModel({ arch: 'c4', depth: 18 });
    const exp = exportDetectron2(model, 'fpn');
    const keys = Object.keys(exp.checkpoint.model);
    assert.ok(keys.includes('backbone.bottom_up.res5.0.conv1.weight'), 'res5 from the C4 RoI head goes to bottom_up.res5');
    assert.ok(!keys.some((k) => k.startsWith('backbone.fpn_') || k.startsWith('roi_heads.')));
    assert.ok(exp.omitted.some((s) => s.startsWith('FPN')) && exp.omitted.some((s) => s.startsWith('box head')));
    assert.throws(() => exportDetectron2(model, 'c5' as 'fpn'), /arch must be 'fpn' or 'c4', got 'c5'/);
  });

  it('soco-train export: a training checkpoint to Detectron2 weights + config', () => {
    torch.manualSeed(4);
    const model = new SoCoModel({ depth: 18 });
    const ckpt = path.join(tmp, 'last.pth');
    // The trainer's checkpoint layout (lib/train/trainer.ts checkpointState), without the target.
    torch.save(ckpt, { format: 'soco-train checkpoint 1', step: 5, online: { ...model.online.stateDict('online.'), ...model.predictor.stateDict('predictor.') }, config: '{}' });
    const out = path.join(tmp, 'exp', 'r18.pth');
    const yaml = path.join(tmp, 'exp', 'r18.yaml');
    const bin = path.join(ROOT, 'bin', 'soco-train.js');
    const log = execFileSync(process.execPath, [bin, 'export', '--checkpoint', ckpt, '--out', out, '--arch', 'c4', '--config-out', yaml], { encoding: 'utf8' });
    assert.match(log, /MODEL\.RESNETS\.STRIDE_IN_1X1 False/);
    assert.match(log, /MODEL\.RESNETS\.NORM SyncBN/);
    assert.match(log, /MODEL\.BACKBONE\.FREEZE_AT 0/);
    assert.match(log, /INPUT\.FORMAT RGB/);
    assert.match(log, /MODEL\.PIXEL_STD "\[58\.395, 57\.12, 57\.375\]"/);
    const loaded = torch.load<{ model: Record<string, Tensor> }>(out);
    const want = exportDetectron2(model, 'c4').checkpoint.model;
    assert.deepEqual(Object.keys(loaded.model).sort(), Object.keys(want).sort());
    for (const [k, t] of Object.entries(want)) assert.ok(torch.tidy(() => loaded.model[k].eq(t).all().item()) === 1, `${k} values`);
    for (const t of Object.values(loaded.model)) t.dispose();
    assert.match(fs.readFileSync(yaml, 'utf8'), new RegExp(`WEIGHTS: "${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"`));
    const bad = () => execFileSync(process.execPath, [bin, 'export', '--checkpoint', yaml, '--out', out], { encoding: 'utf8', stdio: 'pipe' });
    assert.throws(bad, /soco-train: load\(/);
  });

  it('configs/detectron2: the authors\' fine-tuning settings, as exportDetectron2 prints them', () => {
    for (const [arch, file] of [['fpn', 'mask_rcnn_R_50_FPN_1x_soco.yaml'], ['c4', 'mask_rcnn_R_50_C4_1x_soco.yaml']] as const) {
      const text = fs.readFileSync(path.join(ROOT, 'configs', 'detectron2', file), 'utf8');
      assert.equal(text, detectron2Yaml(arch, `soco_r50_${arch}.pth`), `${file} is detectron2Yaml('${arch}') (regenerate it)`);
      const py = `import yaml,json,sys; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))`;
      // Any YAML parser will do (Detectron2's is PyYAML): Debian's python3-yaml.
      const cfg = JSON.parse(execFileSync(SYSTEM_PYTHON, ['-c', py, path.join(ROOT, 'configs', 'detectron2', file)], { encoding: 'utf8' }));
      const m = cfg.MODEL;
      assert.deepEqual([m.RESNETS.NORM, m.RESNETS.STRIDE_IN_1X1, m.BACKBONE.FREEZE_AT, m.MASK_ON, cfg.INPUT.FORMAT], ['SyncBN', false, 0, true, 'RGB']);
      assert.deepEqual([m.PIXEL_MEAN, m.PIXEL_STD], [[123.675, 116.28, 103.53], [58.395, 57.12, 57.375]]);
      assert.deepEqual([cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.MAX_ITER, cfg.TEST.PRECISE_BN.ENABLED], [2.5e-5, 90000, true]);
      if (arch === 'fpn') {
        assert.deepEqual([m.FPN.NORM, m.ROI_BOX_HEAD.NAME, m.ROI_BOX_HEAD.NUM_CONV, m.ROI_BOX_HEAD.NUM_FC, m.ROI_BOX_HEAD.NORM, m.ROI_MASK_HEAD.NORM],
          ['SyncBN', 'FastRCNNConvFCHead', 4, 1, 'SyncBN', 'SyncBN']);
      } else {
        assert.equal(m.ROI_HEADS.NAME, 'Res5ROIHeads');
      }
    }
  });
});
