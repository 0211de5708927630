// The authors' box pipeline (boxPipeline 'official', RECIPE.md "The authors' box pipeline"), rule
// by rule against values worked out by hand, then through sampleViews with a scripted random
// stream, so every draw (crops, picks, pads, flips) is chosen by the test.
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { ROIPooler } from '../lib/model';
import { toAuthorsRects } from '../lib/data/selective_search';
import { directedTerm, idWeights, socoLoss } from '../lib/train/loss';
import {
  Box, GeometryOptions, OFFICIAL_MAX_SIZE, Rng, authorsInclusive, clipToCrop, fpnLevel, officialGeometry, officialLevel, officialViewBox,
  sampleViews,
} from '../lib/data/views_geometry';

/** A random stream that returns the given values in order, then 0.9 (no flip, no jitter). */
class Scripted extends Rng {
  constructor(private readonly values: number[]) { super(0); }
  override next(): number { return this.values.length ? this.values.shift() as number : 0.9; }
}

/** The values randomResizedCrop(200 x 200, scale [0.25, 0.25], ratio [1, 1]) reads for the 100 x 100 crop at (x, y). */
const crop100 = (x: number, y: number): number[] => [0.5, 0.5, y / 101 + 1e-9, x / 101 + 1e-9];

const round = (b: readonly number[], d = 1e9): number[] => b.map((x) => Math.round(x * d) / d);

describe("the authors' box pipeline (official)", function () {
  it('loads a store box as the authors load their [x, y, w, h]: inclusive [x, y, x + w - 1, y + h - 1]', () => {
    // Exact extents [10, 20, 110, 70) are the authors' rect [10, 20, 99, 49] (w one pixel short).
    assert.deepEqual(toAuthorsRects(Int32Array.of(10, 20, 110, 70)), [[10, 20, 99, 49]]);
    assert.deepEqual(authorsInclusive([10, 20, 110, 70]), [10, 20, 108, 68]);
  });

  it('clips to a crop with strict overlaps, moves into its frame, and falls back to the whole view', () => {
    const crop = { x: 50, y: 0, w: 100, h: 60 };  // inclusive region [50, 0, 149, 59]
    const boxes: Box[] = [[10, 20, 108, 68], [149, 0, 200, 10], [120, 5, 130, 59]];
    // [149, 0, ...] shares only column 149 with the crop: 149 < 149 fails, dropped.
    assert.deepEqual(clipToCrop(boxes, [3, 5, 7], crop), { boxes: [[0, 20, 58, 59], [70, 5, 80, 59]], ids: [3, 7] });
    assert.deepEqual(clipToCrop([[149, 0, 200, 10]], [5], crop), { boxes: [[0, 0, 99, 59]], ids: [0] });
  });

  it('reads the level from the integer box: sqrt((x2 - x1 + 1)(y2 - y1 + 1)) at 48/96/192/224', () => {
    const t: [number, number, number] = [48, 96, 192];
    assert.equal(officialLevel([0, 0, 47, 47], t), 0);   // 48: P2
    assert.equal(officialLevel([0, 0, 48, 47], t), 1);   // sqrt(49 * 48) = 48.50: P3
    assert.equal(officialLevel([10, 10, 105, 105], t), 1);  // 96: P3
    assert.equal(officialLevel([0, 0, 191, 192], t), 3);  // sqrt(192 * 193) = 192.50: P5
    assert.equal(officialLevel([0, 0, 223, 223], t), 3);  // 224: P5
    assert.equal(officialLevel([0, 0, 224, 223], t), -1);  // above OFFICIAL_MAX_SIZE: no level
    assert.equal(OFFICIAL_MAX_SIZE, 224);
    // The same box one level apart under the two rules: the paper's continuous [0, 48) box is 48
    // (P2); the authors' integer box [0, 48] counts 49 pixels (P3).
    assert.equal(fpnLevel([0, 0, 48, 48], t), 0);
    assert.equal(officialLevel([0, 0, 48, 48], t), 1);
  });

  it('scales, truncates and flips an inclusive box as the authors (x1\' = 1 - x2, x2\' = 1 - x1 on normalised x)', () => {
    // Inclusive [30, 10, 129, 109] in a 300 x 200 crop, view 224: 30/300*224 = 22.4 -> 22,
    // 10/200*224 = 11.2 -> 11, 129/300*224 = 96.32 -> 96, 109/200*224 = 122.08 -> 122.
    const plain = officialViewBox([30, 10, 129, 109], 300, 200, 224, 224, false);
    assert.deepEqual(plain.integer, [22, 11, 96, 122]);
    assert.equal(officialLevel(plain.integer, [48, 96, 192]), 1);  // sqrt(75 * 112) = 91.65: P3
    assert.deepEqual(round(plain.normalized), [0.1, 0.05, 0.43, 0.545]);
    assert.deepEqual(round(plain.pixels), [22.4, 11.2, 96.32, 122.08]);
    const flipped = officialViewBox([30, 10, 129, 109], 300, 200, 224, 224, true);
    assert.deepEqual(flipped.integer, plain.integer, 'the level is read before the flip');
    assert.deepEqual(round(flipped.normalized), [0.57, 0.05, 0.9, 0.545]);
    assert.deepEqual(round(flipped.pixels), [127.68, 11.2, 201.6, 122.08]);
  });

  it("RoIAlign scale 'map': a 112 view's 4x4 P5 is read at 4/112, not 1/32", () => {
    torch.tidy(() => {
      // P5 of a 112 view (ResNet: 112 -> 56 -> 28 -> 14 -> 7 -> 4), value = column index.
      const p5 = torch.tensor(Float32Array.from({ length: 16 }, (_, i) => i % 4), { shape: [1, 1, 4, 4] });
      const whole = torch.tensor([[0, 0, 0, 112, 112]]);
      const at = (scale: 'stride' | 'map'): number =>
        new ROIPooler({ outputSize: 1, strides: [32], scale }).pool([p5], whole, undefined, [112, 112]).item();
      // map: the box is [0, 4) on the map, aligned [-0.5, 3.5): 4 samples at x = 0, 1, 2, 3 -> 1.5.
      assert.ok(Math.abs(at('map') - 1.5) < 1e-6, `${at('map')}`);
      // stride: [0, 3.5), aligned [-0.5, 3): 4 samples at -0.0625 (read as 0), 0.8125, 1.6875, 2.5625.
      assert.equal(at('stride'), (0 + 0.8125 + 1.6875 + 2.5625) / 4);
      assert.throws(() => new ROIPooler({ outputSize: 1, strides: [32], scale: 'map' }).pool([p5], whole), /scale 'map' needs the size \[H, W\] of the view/);
    });
  });

  it('weights a padded pair with different repeats by proposal id: sum cos C / sum C', () => {
    torch.tidy(() => {
      // V1 padded with proposal 0, V2 with proposal 1.
      const idsA = torch.tensor(BigInt64Array.of(0n, 1n, 2n, 0n), { shape: [1, 4] });
      const idsB = torch.tensor(BigInt64Array.of(0n, 1n, 2n, 1n), { shape: [1, 4] });
      const C = idWeights(idsA, idsB);
      assert.deepEqual(C.toArray(), [1, 0, 0, 0, /**/ 0, 1, 0, 1, /**/ 0, 0, 1, 0, /**/ 1, 0, 0, 0]);
      const s = Math.SQRT1_2;
      const a = torch.tensor([[[1, 0], [0, 1], [1, 1], [1, 0]]]);
      const b = torch.tensor([[[1, 0], [1, 1], [0, 1], [1, 1]]]);
      // Pairs (0,0) 1, (1,1) s, (1,3) s, (2,2) s, (3,0) 1: 5 pairs.
      const byId = -2 * (2 + 3 * s) / 5;
      assert.ok(Math.abs(directedTerm({ online: a, target: b, weights: C }, 'paper').item() - byId) < 1e-6);
      assert.ok(Math.abs(directedTerm({ online: a, target: b, weights: C }, 'authors').item() - -2 * (2 + 3 * s) / (5 + 1e-6)) < 1e-6);
      // Row pairing would weigh the repeats otherwise: (0,0) 1, (1,1) s, (2,2) s, (3,3) s over 4.
      const byRow = -2 * (1 + 3 * s) / 4;
      assert.ok(Math.abs(directedTerm({ online: a, target: b }, 'paper').item() - byRow) < 1e-6);
      assert.ok(Math.abs(byId - byRow) / Math.abs(byRow) > 0.05, `${byId} vs ${byRow}`);
      // The swapped direction uses C transposed: b's slot 3 (proposal 1) pairs with a's slot 1.
      const both = socoLoss([{ name: 'v1-v2', onlineA: a, targetA: a, onlineB: b, targetB: b, weights: C }], 'paper').loss.item();
      assert.ok(Math.abs(both - 2 * byId) < 1e-6, `${both}`);
      // A slot with no level carries id -1 and pairs with nothing.
      const noLevel = torch.tensor(BigInt64Array.of(0n, -1n), { shape: [1, 2] });
      assert.deepEqual(idWeights(noLevel, torch.tensor(BigInt64Array.of(0n, -1n), { shape: [1, 2] })).toArray(), [1, 0, 0, 0]);
      assert.throws(() => directedTerm({ online: a, target: b, weights: C, valid: torch.ones([1, 4]) }), /not both/);
    });
  });

  describe('sampleViews, draws chosen by a scripted stream', function () {
    // 200 x 200 image; every random crop is 100 x 100 at a scripted place; K = 2 (least 1).
    const o: GeometryOptions = { ...officialGeometry('fpn'), k: 2, cropScale: [0.25, 0.25], cropRatio: [1, 1], jitter: false };
    // One proposal in the top-left corner: exact extents [0, 40) -> inclusive [0, 0, 38, 38].
    const corner: Box[] = [[0, 0, 40, 40]];

    it('draws the crops again while a pair has fewer than least_common proposals', () => {
      // Try 1: V2 at (100, 100) misses the proposal, V3 at (0, 0) holds it: rejected.
      // Try 2: both at (0, 0): accepted. Then 3 flips (0.9: none) and one pad per side of each pair.
      const iv = sampleViews(new Scripted([...crop100(100, 100), ...crop100(0, 0), ...crop100(0, 0), ...crop100(0, 0)]), 200, 200, corner, o);
      assert.deepEqual(iv.views.map((v) => [v.crop.x, v.crop.y, v.crop.w]), [[0, 0, 200], [0, 0, 100], [0, 0, 100]]);
      assert.equal(iv.fallback, false);
      assert.deepEqual(iv.pairs, [[0, 1], [2, 3]]);
      assert.deepEqual(iv.sets.map((s) => s.view), [0, 1, 0, 2]);
      // V2: [0, 0, 38, 38] in a 100 crop at 224: 85.12 -> integer [0, 0, 85, 85], size 86: P3.
      const v2 = iv.sets[1];
      assert.deepEqual(v2.inclusive, [[0, 0, 38, 38], [0, 0, 38, 38]]);
      assert.deepEqual(v2.ids, [0, 0]);
      assert.deepEqual(v2.boxes.map((b) => round(b)), [[0, 0, 85.12, 85.12], [0, 0, 85.12, 85.12]]);
      assert.deepEqual(v2.levels, [1, 1]);
      // V1 (the whole 200 image at 224): 38 * 1.12 = 42.56 -> [0, 0, 42, 42], size 43: P2.
      assert.deepEqual(iv.sets[0].boxes.map((b) => round(b)), [[0, 0, 42.56, 42.56], [0, 0, 42.56, 42.56]]);
      assert.deepEqual(iv.sets[0].levels, [0, 0]);
      // V3 at 112: 38 * 1.12 -> [0, 0, 42, 42]: P2.
      assert.deepEqual(iv.sets[3].levels, [0, 0]);
    });

    it('after five failed tries takes the last draw as it is: whole-view boxes where nothing overlaps', () => {
      const miss = [...crop100(100, 100), ...crop100(100, 100)];
      const iv = sampleViews(new Scripted([...miss, ...miss, ...miss, ...miss, ...miss]), 200, 200, corner, o);
      assert.equal(iv.fallback, true);
      assert.deepEqual(iv.views[1].crop, { x: 100, y: 100, w: 100, h: 100 });
      assert.deepEqual(iv.sets[0].inclusive, [[0, 0, 199, 199], [0, 0, 199, 199]]);
      assert.deepEqual(iv.sets[1].inclusive, [[0, 0, 99, 99], [0, 0, 99, 99]]);
      // Both whole-view boxes carry id 0 (the authors' id 1), so they pair.
      assert.deepEqual([iv.sets[0].ids, iv.sets[1].ids], [[0, 0], [0, 0]]);
      assert.deepEqual(iv.sets[1].boxes.map((b) => round(b)), [[0, 0, 221.76, 221.76], [0, 0, 221.76, 221.76]]);
    });

    it('uses the whole image [0, 0, W-1, H-1] as the one proposal of an image without any', () => {
      const iv = sampleViews(new Scripted([...crop100(30, 60), ...crop100(0, 0)]), 200, 200, [], o);
      assert.equal(iv.fallback, true);
      assert.deepEqual(iv.sets[0].inclusive, [[0, 0, 199, 199], [0, 0, 199, 199]]);
      assert.deepEqual(iv.sets[1].inclusive, [[0, 0, 99, 99], [0, 0, 99, 99]]);
      assert.deepEqual(iv.sets[1].ids, [0, 0]);
    });

    it('pads each view on its own among the common proposals: the two sides repeat different ones', () => {
      // Three proposals inside every crop, K = 4: one pad per side. V1's pad draws index 0
      // (rng.int(3) of 0.1), V2's draws index 1 (0.5); pair V1-V3 draws 2 and 0.
      const props: Box[] = [[2, 2, 42, 42], [10, 20, 90, 60], [50, 50, 98, 99]];
      const k4 = { ...o, k: 4 };
      const iv = sampleViews(new Scripted([...crop100(0, 0), ...crop100(0, 0), 0.9, 0.9, 0.9, 0.1, 0.5, 0.9, 0.1]), 200, 200, props, k4);
      assert.deepEqual(iv.sets.map((s) => s.ids), [[0, 1, 2, 0], [0, 1, 2, 1], [0, 1, 2, 2], [0, 1, 2, 0]]);
      assert.deepEqual(iv.sets[1].inclusive, [[2, 2, 40, 40], [10, 20, 88, 58], [50, 50, 96, 97], [10, 20, 88, 58]]);
      // The loss weights of pair V1-V2: proposal 0 twice on V1, proposal 1 twice on V2.
      torch.tidy(() => {
        const ids = (s: number) => torch.tensor(BigInt64Array.from(iv.sets[s].ids, BigInt), { shape: [1, 4] });
        assert.deepEqual(idWeights(ids(0), ids(1)).toArray(), [1, 0, 0, 0, /**/ 0, 1, 0, 1, /**/ 0, 0, 1, 0, /**/ 1, 0, 0, 0]);
      });
    });

    it('flips V1 once for all its sets, and the other views on their own', () => {
      // Flip draws: V1 yes (0.1), V2 no, V3 yes.
      const iv = sampleViews(new Scripted([...crop100(0, 0), ...crop100(0, 0), 0.1, 0.9, 0.1]), 200, 200, corner, o);
      assert.deepEqual(iv.views.map((v) => v.flip), [true, false, true]);
      // V1: normalised [0, 0, 0.19, 0.19] flipped -> [0.81, 0, 1, 0.19] -> 224 px.
      for (const s of [0, 2]) assert.deepEqual(iv.sets[s].boxes.map((b) => round(b)), [[181.44, 0, 224, 42.56], [181.44, 0, 224, 42.56]]);
      assert.deepEqual(round(iv.sets[1].boxes[0]), [0, 0, 85.12, 85.12]);
      assert.deepEqual(round(iv.sets[3].boxes[0]), [112 - 42.56, 0, 112, 42.56]);
    });
  });

  it("SoCo*: V4 is V2 resized, so it shares V2's set and V1-V2's V1 set", () => {
    const props: Box[] = [[10, 10, 200, 150], [50, 60, 300, 280], [100, 20, 250, 200]];
    for (let seed = 0; seed < 20; seed++) {
      const iv = sampleViews(new Rng(seed), 320, 300, props, officialGeometry('fpn', true));
      assert.deepEqual(iv.sets.map((s) => s.view), [0, 1, 0, 2, 3]);
      assert.deepEqual(iv.pairs, [[0, 1], [2, 3], [0, 4]]);
      assert.deepEqual(iv.sets[4].ids, iv.sets[1].ids);
      assert.deepEqual(iv.sets[4].inclusive, iv.sets[1].inclusive);
      assert.deepEqual(iv.views[3].crop, iv.views[1].crop);
    }
  });

  it('jitters the V1 copies only, each pair on its own, by the authors\' inclusive rule', () => {
    const props: Box[] = [[40, 40, 200, 180]];  // inclusive [40, 40, 198, 178]: w 159, h 139
    let jittered = 0;
    for (let seed = 0; seed < 200; seed++) {
      const iv = sampleViews(new Rng(seed), 320, 240, props, { ...officialGeometry('fpn'), k: 1 });
      if (iv.fallback) continue;
      for (const s of [1, 3]) assert.deepEqual(iv.sets[s].ids, [0]);
      for (const s of [0, 2]) {
        const [x1, y1, x2, y2] = iv.sets[s].inclusive![0];
        if (x1 === 40 && y1 === 40 && x2 === 198 && y2 === 178) continue;
        jittered++;
        // x1 moves by r w, and the inclusive width w becomes w + r w (|r| <= 0.1); inside the image.
        assert.ok(Math.abs(x1 - 40) <= 15.9 + 1e-9 && Math.abs(y1 - 40) <= 13.9 + 1e-9, `${[x1, y1]}`);
        assert.ok(Math.abs((x2 - x1 + 1) - 159) <= 15.9 + 1e-9 && Math.abs((y2 - y1 + 1) - 139) <= 13.9 + 1e-9, `${[x1, y1, x2, y2]}`);
      }
    }
    assert.ok(jittered > 100 && jittered < 300, `${jittered} of ~400 V1 copies jittered`);
  });

  it('refuses the authors\' pipeline on the paper\'s crops of V1', () => {
    assert.throws(() => sampleViews(new Rng(1), 300, 200, [], { ...officialGeometry('fpn'), cropFromRaw: false }), /cropFromRaw and keepClipped/);
  });
});
