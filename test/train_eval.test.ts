// Retrieval evaluation: the top-1 rule by hand, and the whole protocol on the held-out photos
// (random network vs a checkpoint's network, reproducible, chance level computed from the gallery).
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as torch from '../lib/torch';
import { top1, iou, evalRetrieval, loadOnlineNetwork } from '../lib/train/eval_retrieval';
import { SoCoTrainer } from '../lib/train/trainer';
import { ProposalStoreWriter } from '../lib/data/proposal_store';
import { listImageFiles } from '../lib/train/data_source';
import { readImageSize } from '../lib/data/image';

const ROOT = path.resolve(__dirname, '..', '..');
const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
const HELDOUT = path.join(ROOT, 'test', 'fixtures', 'images', 'heldout');

async function grid(images: string, file: string): Promise<void> {
  // Nine boxes per image on a 3x3 grid of overlapping cells (real store, hand-placed boxes).
  const w = ProposalStoreWriter.open(file, { format: 'soco-train proposals 1' });
  for (const key of listImageFiles(images)) {
    const { width: W, height: H } = await readImageSize(path.join(images, key));
    const boxes: number[] = [];
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++)
      boxes.push(Math.round((i * W) / 5), Math.round((j * H) / 5), Math.round(((i + 2) * W) / 5), Math.round(((j + 2) * H) / 5));
    w.append(key, { boxes, width: W, height: H, rawCount: 9, uniqueCount: 9, filterStage: 0, millis: 0 });
  }
  w.close();
}

describe('retrieval evaluation', function () {
  this.timeout(300000);
  let dir: string;
  let threads = 1;
  before(async () => {
    threads = torch.getNumThreads();
    torch.setNumThreads(1);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-eval-'));
    await grid(HELDOUT, path.join(dir, 'heldout.store'));
    await grid(TRAIN, path.join(dir, 'train.store'));
  });
  after(() => { torch.setNumThreads(threads); fs.rmSync(dir, { recursive: true, force: true }); });

  it('top-1 by hand: nearest gallery row by cosine, correct when the keys match', () => {
    torch.tidy(() => {
      const gallery = torch.tensor([[1, 0], [0, 1], [-1, 0]]);
      const query = torch.tensor([[2, 0.1], [0.1, 3], [-1, -0.2], [0.9, 1]]);
      // Nearest: row 0, row 1, row 2, row 1 (cos 0.743 vs 0.669).
      assert.equal(top1(query, gallery, ['a', 'b', 'c', 'b'], ['a', 'b', 'c']), 4);
      assert.equal(top1(query, gallery, ['a', 'b', 'x', 'a'], ['a', 'b', 'c']), 2);
    });
  });

  it('IoU by hand', () => {
    assert.equal(iou([0, 0, 2, 2], [1, 1, 3, 3]), 1 / 7);
    assert.equal(iou([0, 0, 2, 2], [0, 0, 2, 2]), 1);
    assert.equal(iou([0, 0, 1, 1], [2, 2, 3, 3]), 0);
  });

  it('scores a random network and a trained checkpoint on the same views; reproducible; chance from the gallery', async () => {
    const out = path.join(dir, 'run');
    const t = new SoCoTrainer({
      images: TRAIN, proposals: path.join(dir, 'train.store'), out, depth: 18, head: false, batchSize: 2, maxIters: 1, epochs: 1,
      warmupEpochs: 0, v1Size: 112, projectorHidden: 64, predictorHidden: 64, embedDim: 32, prefetch: 1,
    });
    await t.train();
    await t.close();
    const ckpt = path.join(out, 'last.pth');
    const { net, config } = loadOnlineNetwork(ckpt);
    assert.equal(config.depth, 18);
    assert.equal(net.options.head, false);
    for (const p of [...net.parameters(), ...net.buffers()]) p.dispose();

    const opts = { checkpoint: ckpt, images: HELDOUT, proposals: path.join(dir, 'heldout.store'), rounds: 2, k: 4 };
    const a = await evalRetrieval(opts);
    const b = await evalRetrieval(opts);
    assert.deepEqual(a, b, 'same seed, same numbers');
    assert.equal(a.images, 3);
    assert.ok(a.pretrained && a.pretrained.queries === a.random.queries && a.random.queries > 0);
    assert.ok(a.random.queries <= 2 * 3 * 4);
    assert.ok(a.gallery > 1 && a.gallery <= 12);
    assert.ok(a.chance >= 1 / a.gallery - 1e-12 && a.chance < 1);
    assert.ok(a.chanceObject >= a.chance - 1e-12, 'the same proposal is also the same object');
    assert.ok(a.chanceImage >= a.chanceObject - 1e-12 && a.chanceImage < 1, 'the same object is in the same image');
    for (const s of [a.pretrained!, a.random]) {
      assert.equal(s.top1, s.correct / s.queries);
      assert.ok(s.correctObject >= s.correct);
      assert.ok(s.correctImage >= s.correctObject);
    }
    const r = await evalRetrieval({ ...opts, checkpoint: undefined, network: { depth: 18, head: false, projectorHidden: 64, predictorHidden: 64, embedDim: 32 }, v1Size: 112 });
    assert.equal(r.pretrained, null);
    assert.deepEqual(r.random, a.random, 'the random baseline is the same network with or without a checkpoint');
  });

  it('names bad arguments', async () => {
    await assert.rejects(evalRetrieval({ images: path.join(dir, 'none'), proposals: 'x' }), /--images .*none: no such folder/);
    await assert.rejects(evalRetrieval({ images: HELDOUT, proposals: path.join(dir, 'none.store') }), /--proposals .*none\.store: no such file/);
    await assert.rejects(evalRetrieval({ images: HELDOUT, proposals: path.join(dir, 'train.store') }), /belongs to another image set/);
    await assert.rejects(evalRetrieval({ checkpoint: path.join(dir, 'no.pth'), images: HELDOUT, proposals: path.join(dir, 'heldout.store') }), /--checkpoint .*no\.pth: no such file/);
  });
});
