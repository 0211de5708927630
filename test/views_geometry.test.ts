// View geometry: the property that matters is that boxes follow the pixels. A box is drawn into a
// source image, the image is pushed through each view's actual pixel chain (resize to V1 when the
// crop is of V1, integer crop, resize, mirror) and the drawn box must land where the box transform
// says, within one pixel (pixel-centre quantisation gives at most 0.5 per edge).
import { strict as assert } from 'assert';
import {
  Box, GeometryOptions, PAPER_GEOMETRY, Rng, ViewGeometry, fpnLevel, mixSeed, officialGeometry, randomBoxes, randomResizedCrop,
  sampleViews, viewLayout,
} from '../lib/data/views_geometry';

interface Img { w: number; h: number; px: Float32Array }

// Bilinear with half-pixel centres and edge clamping (torch interpolate align_corners=False,
// no antialias): on a 0/1 mask the 0.5 level crossing stays at the box edge.
function resize(im: Img, ow: number, oh: number): Img {
  const out = new Float32Array(ow * oh);
  const sx = im.w / ow;
  const sy = im.h / oh;
  for (let y = 0; y < oh; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), im.h - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, im.h - 1);
    const wy = fy - y0;
    for (let x = 0; x < ow; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), im.w - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, im.w - 1);
      const wx = fx - x0;
      const a = im.px[y0 * im.w + x0] * (1 - wx) + im.px[y0 * im.w + x1] * wx;
      const b = im.px[y1 * im.w + x0] * (1 - wx) + im.px[y1 * im.w + x1] * wx;
      out[y * ow + x] = a * (1 - wy) + b * wy;
    }
  }
  return { w: ow, h: oh, px: out };
}

function crop(im: Img, c: { x: number; y: number; w: number; h: number }): Img {
  const out = new Float32Array(c.w * c.h);
  for (let y = 0; y < c.h; y++) out.set(im.px.subarray((c.y + y) * im.w + c.x, (c.y + y) * im.w + c.x + c.w), y * c.w);
  return { w: c.w, h: c.h, px: out };
}

function mirror(im: Img): Img {
  const out = new Float32Array(im.px.length);
  for (let y = 0; y < im.h; y++) for (let x = 0; x < im.w; x++) out[y * im.w + x] = im.px[y * im.w + im.w - 1 - x];
  return { ...im, px: out };
}

function render(src: Img, v: ViewGeometry, v1Size: number): Img {
  let im = v.base === 'v1' ? resize(src, v1Size, v1Size) : src;
  im = resize(crop(im, v.crop), v.width, v.height);
  return v.flip ? mirror(im) : im;
}

function bbox(im: Img): Box | null {
  let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
  for (let y = 0; y < im.h; y++) for (let x = 0; x < im.w; x++) {
    if (im.px[y * im.w + x] >= 0.5) {
      x1 = Math.min(x1, x); y1 = Math.min(y1, y); x2 = Math.max(x2, x + 1); y2 = Math.max(y2, y + 1);
    }
  }
  return x1 === Infinity ? null : [x1, y1, x2, y2];
}

/** The authors' view layout with the paper's continuous box path (boxPipeline 'paper'): what these
 * properties hold for. The authors' own box path is checked in test/views_official.test.ts. */
const officialLayout = (arch: 'fpn' | 'c4' = 'fpn', socoStar = false): GeometryOptions => ({ ...officialGeometry(arch, socoStar), boxPipeline: 'paper' });

const presets: [string, GeometryOptions][] = [
  ['paper', { ...PAPER_GEOMETRY, jitter: false }],
  ['paper soco*', { ...PAPER_GEOMETRY, socoStar: true, jitter: false }],
  ['official layout', { ...officialLayout('fpn'), jitter: false }],
  ['official layout soco*', { ...officialLayout('fpn', true), jitter: false }],
  ['official layout c4', officialLayout('c4')],
  ['paper small sizes', { ...PAPER_GEOMETRY, jitter: false, v1Size: 128, v2Size: 96, v3Size: 48 }],
  ['official layout soco* other sizes', { ...officialLayout('fpn', true), jitter: false, v1Size: 160, v2Size: 144, v3Size: 64, v4Size: 96 }],
  ['paper no V3', { ...PAPER_GEOMETRY, jitter: false, multiView: false, v2Size: 112 }],
];

describe('view geometry', function () {
  it('boxes follow crop/resize/flip of the pixels within one pixel (property, 300 cases)', function () {
    const rng = new Rng(7);
    let checked = 0;
    for (let t = 0; t < 300; t++) {
      const [name, o] = presets[t % presets.length];
      const W = 100 + rng.int(400);
      const H = 100 + rng.int(400);
      const bw = Math.round(W * rng.uniform(0.25, 0.7));
      const bh = Math.round(H * rng.uniform(0.25, 0.7));
      const bx = rng.int(W - bw + 1);
      const by = rng.int(H - bh + 1);
      const box: Box = [bx, by, bx + bw, by + bh];
      const src: Img = { w: W, h: H, px: new Float32Array(W * H) };
      for (let y = by; y < by + bh; y++) src.px.fill(1, y * W + bx, y * W + bx + bw);
      const iv = sampleViews(new Rng(mixSeed(3, t)), W, H, [box], { ...o, k: 1 });
      if (iv.fallback) continue;  // box not in every view: nothing drawn to follow
      for (const v of iv.views) {
        const want = v.boxes[0];
        if (want[2] - want[0] < 3 || want[3] - want[1] < 3) continue;  // too thin to threshold
        const got = bbox(render(src, v, o.v1Size));
        assert.ok(got, `${name} case ${t} ${v.name}: box vanished`);
        for (let i = 0; i < 4; i++)
          assert.ok(Math.abs(got[i] - want[i]) <= 1, `${name} case ${t} ${v.name}: drawn ${got} vs transform ${want.map((x) => x.toFixed(2))}`);
        checked++;
      }
    }
    assert.ok(checked > 400, `${checked} view boxes checked`);
  });

  it('is deterministic per seed and varies across seeds', function () {
    const props: Box[] = [[10, 10, 200, 150], [50, 60, 300, 280], [0, 0, 320, 240], [100, 20, 250, 200], [30, 90, 180, 230]];
    const a = sampleViews(new Rng(mixSeed(1, 2, 3)), 320, 240, props);
    const b = sampleViews(new Rng(mixSeed(1, 2, 3)), 320, 240, props);
    const c = sampleViews(new Rng(mixSeed(1, 2, 4)), 320, 240, props);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('samples K without replacement among proposals common to all views, pads with replacement', function () {
    const rng = new Rng(11);
    const props: Box[] = [];
    for (let i = 0; i < 40; i++) {
      const x = rng.int(250), y = rng.int(180);
      props.push([x, y, x + 20 + rng.int(60), y + 20 + rng.int(50)]);
    }
    let padded = 0;
    for (let t = 0; t < 200; t++) {
      for (const o of [PAPER_GEOMETRY, officialLayout('fpn')]) {
        const iv = sampleViews(new Rng(mixSeed(9, t)), 340, 250, t % 2 ? props : props.slice(0, 3), o);
        assert.equal(iv.ids.length, 4);
        for (const v of iv.views) assert.equal(v.boxes.length, 4);
        if (iv.fallback) continue;
        const distinct = new Set(iv.ids).size;
        const kx = o.cropFromRaw ? 1 : 340 / 224, ky = o.cropFromRaw ? 1 : 250 / 224;
        const inAll = (t % 2 ? props : props.slice(0, 3)).map((p, i) => iv.views.every((v) => {
          const r = [v.crop.x * (v.name === 'v1' ? 1 : kx), v.crop.y * (v.name === 'v1' ? 1 : ky),
            (v.crop.x + v.crop.w) * (v.name === 'v1' ? 1 : kx), (v.crop.y + v.crop.h) * (v.name === 'v1' ? 1 : ky)];
          return o.keepClipped ? p[0] < r[2] && p[2] > r[0] && p[1] < r[3] && p[3] > r[1]
            : p[0] >= r[0] - 1e-6 && p[1] >= r[1] - 1e-6 && p[2] <= r[2] + 1e-6 && p[3] <= r[3] + 1e-6;
        }) ? i : -1).filter((i) => i >= 0);
        for (const id of iv.ids) assert.ok(inAll.includes(id), `id ${id} present in every view`);
        assert.equal(distinct, Math.min(4, inAll.length));
        if (inAll.length < 4) padded++;
        if (o.keepClipped) for (const v of iv.views) for (const bx of v.boxes)
          assert.ok(bx[0] >= -1e-9 && bx[1] >= -1e-9 && bx[2] <= v.width + 1e-9 && bx[3] <= v.height + 1e-9);
      }
    }
    assert.ok(padded > 0, 'some cases exercised padding');
  });

  it('uses the whole image when an image has no proposals', function () {
    const iv = sampleViews(new Rng(5), 300, 200, [], officialLayout('fpn'));
    assert.ok(iv.fallback);
    assert.deepEqual(iv.ids, [-1, -1, -1, -1]);
    for (const v of iv.views.slice(1)) for (const b of v.boxes) assert.deepEqual(b.map((x) => Math.round(x * 1e6) / 1e6), [0, 0, v.width, v.height]);
  });

  it('jitters V1 boxes only, about half of them, by at most 10% per term', function () {
    const props: Box[] = [[40, 40, 200, 180]];
    let jittered = 0, n = 0;
    for (let t = 0; t < 400; t++) {
      const o = { ...officialLayout('fpn'), k: 1 };
      const a = sampleViews(new Rng(t), 320, 240, props, { ...o, jitter: false });
      const b = sampleViews(new Rng(t), 320, 240, props, o);
      assert.deepEqual(a.views.slice(1).map((v) => v.boxes), b.views.slice(1).map((v) => v.boxes));
      const [p, q] = [a.views[0].boxes[0], b.views[0].boxes[0]];
      const w = p[2] - p[0], h = p[3] - p[1];
      n++;
      if (p.some((x, i) => x !== q[i])) jittered++;
      assert.ok(Math.abs(q[0] - p[0]) <= 0.1 * w + 1e-9 && Math.abs(q[1] - p[1]) <= 0.1 * h + 1e-9);
      assert.ok(Math.abs((q[2] - q[0]) - w) <= 0.2 * w + 1e-9 && Math.abs((q[3] - q[1]) - h) <= 0.2 * h + 1e-9);
    }
    assert.ok(jittered > 0.4 * n && jittered < 0.6 * n, `${jittered}/${n} jittered`);
  });

  it('assigns FPN levels by sqrt(w*h) at 48/96/192', function () {
    const t: [number, number, number] = [48, 96, 192];
    assert.equal(fpnLevel([0, 0, 48, 48], t), 0);
    assert.equal(fpnLevel([0, 0, 48.1, 48], t), 1);
    assert.equal(fpnLevel([0, 0, 96, 96], t), 1);
    assert.equal(fpnLevel([0, 0, 192, 192], t), 2);
    assert.equal(fpnLevel([0, 0, 224, 200], t), 3);
  });

  it('random crops follow torchvision RandomResizedCrop bounds', function () {
    const rng = new Rng(99);
    for (let t = 0; t < 2000; t++) {
      const c = randomResizedCrop(rng, 224, 224, [0.5, 1], [3 / 4, 4 / 3]);
      assert.ok(c.x >= 0 && c.y >= 0 && c.x + c.w <= 224 && c.y + c.h <= 224);
      const area = (c.w * c.h) / (224 * 224);
      assert.ok(area >= 0.49 && area <= 1, `area ${area}`);
      assert.ok(c.w / c.h >= 0.74 && c.w / c.h <= 1.35, `aspect ${c.w / c.h}`);
    }
    // Impossible aspect: falls back to the centre crop.
    const c = randomResizedCrop(new Rng(1), 1000, 100, [0.9, 1], [1, 1]);
    assert.deepEqual(c, { x: 450, y: 0, w: 100, h: 100 });
  });

  it('lays out views as the paper and as the authors', function () {
    const names = (o: GeometryOptions) => sampleViews(new Rng(1), 300, 200, [[0, 0, 100, 100]], o).views.map((v) => `${v.name}:${v.width}`);
    assert.deepEqual(names(PAPER_GEOMETRY), ['v1:224', 'v2:224', 'v3:112']);
    assert.deepEqual(names({ ...PAPER_GEOMETRY, socoStar: true }), ['v1:224', 'v2:224', 'v3:112', 'v4:192']);
    assert.deepEqual(names(officialGeometry('fpn', true)), ['v1:224', 'v2:224', 'v3:192', 'v4:112']);
    assert.deepEqual(names(officialGeometry('c4')), ['v1:224', 'v2:224']);
    const p = sampleViews(new Rng(3), 300, 200, [[0, 0, 100, 100]], PAPER_GEOMETRY);
    assert.deepEqual(p.views[1].crop, p.views[2].crop);  // paper: V3 is V2 downsampled
    assert.equal(p.views[1].base, 'v1');
    assert.equal(sampleViews(new Rng(3), 300, 200, [], officialGeometry('fpn')).views[1].base, 'source');
  });

  it('honours the view sizes in both layouts and for SoCo*, and drops V3 without multi view', function () {
    const sizes = { v1Size: 128, v2Size: 96, v3Size: 48, v4Size: 80 };
    const names = (o: GeometryOptions) => sampleViews(new Rng(1), 300, 200, [[0, 0, 100, 100]], o).views.map((v) => `${v.name}:${v.width}x${v.height}`);
    assert.deepEqual(names({ ...PAPER_GEOMETRY, ...sizes }), ['v1:128x128', 'v2:96x96', 'v3:48x48']);
    assert.deepEqual(names({ ...PAPER_GEOMETRY, ...sizes, socoStar: true }), ['v1:128x128', 'v2:96x96', 'v3:48x48', 'v4:80x80']);
    assert.deepEqual(names({ ...officialGeometry('fpn'), ...sizes }), ['v1:128x128', 'v2:96x96', 'v3:48x48']);
    // The authors' SoCo*: V3 is the extra crop (v4Size), V4 is V2 downsampled (v3Size).
    assert.deepEqual(names({ ...officialGeometry('fpn', true), ...sizes }), ['v1:128x128', 'v2:96x96', 'v3:80x80', 'v4:48x48']);
    assert.deepEqual(names({ ...officialGeometry('c4'), ...sizes }), ['v1:128x128', 'v2:96x96']);
    assert.deepEqual(names({ ...PAPER_GEOMETRY, ...sizes, multiView: false }), ['v1:128x128', 'v2:96x96']);
    assert.deepEqual(names({ ...officialGeometry('fpn'), multiView: false }), ['v1:224x224', 'v2:224x224']);
    assert.deepEqual(viewLayout({ ...PAPER_GEOMETRY, ...sizes }).map((v) => v.size), [128, 96, 48]);
    assert.throws(() => viewLayout({ ...PAPER_GEOMETRY, socoStar: true, multiView: false }), /needs multiView/);
    assert.throws(() => sampleViews(new Rng(1), 300, 200, [], { ...PAPER_GEOMETRY, v3Size: 0 }), /v3Size must be a positive integer, got 0/);
    // Levels are assigned in each view's own pixels: the same proposal is one level lower in V3.
    // (A 300 px box of a 400 px image: 168 px in V1 and V2 at 224, P4; 36 px in V3 at 48, P2.)
    const iv = sampleViews(new Rng(2), 400, 400, [[50, 50, 350, 350]], { ...PAPER_GEOMETRY, jitter: false, k: 1, cropScale: [1, 1], v3Size: 48 });
    assert.ok(!iv.fallback);
    assert.deepEqual(iv.views.map((v) => v.levels[0]), [2, 2, 0]);
  });

  it('random boxes (Table 5(c)) lie in the image with the proposal filter\'s size and aspect, deterministic per seed', function () {
    let n = 0;
    for (let t = 0; t < 300; t++) {
      const rng = new Rng(mixSeed(4, t));
      const W = 40 + rng.int(600), H = 40 + rng.int(600);
      const boxes = randomBoxes(new Rng(mixSeed(8, t)), W, H, 4);
      assert.deepEqual(randomBoxes(new Rng(mixSeed(8, t)), W, H, 4), boxes);
      assert.equal(boxes.length, 4);
      for (const [x1, y1, x2, y2] of boxes) {
        assert.ok(Number.isInteger(x1) && Number.isInteger(y2) && x1 >= 0 && y1 >= 0 && x2 <= W && y2 <= H && x2 > x1 && y2 > y1,
          `box ${[x1, y1, x2, y2]} in ${W}x${H}`);
        const s = Math.sqrt((x2 - x1) * (y2 - y1)) / Math.sqrt(W * H);
        const a = (x2 - x1) / (y2 - y1);
        // Rounding to pixels (and shrinking to fit, in very elongated images) bends the bounds a little.
        if (W / H < 2 && H / W < 2) {
          assert.ok(s >= 0.28 && s <= 0.82, `size ${s}`);
          assert.ok(a >= 1 / 3.3 && a <= 3.3, `aspect ${a}`);
          n++;
        }
      }
    }
    assert.ok(n > 500);
    assert.notDeepEqual(randomBoxes(new Rng(1), 300, 200, 4), randomBoxes(new Rng(2), 300, 200, 4));
  });
});
