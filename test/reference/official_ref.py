#!/usr/bin/python3
"""The authors' box pipeline and loss (RECIPE.md "The authors' box pipeline") in plain PyTorch and
torchvision.ops: the reference for soco-train's --preset official (test/official_pipeline.test.ts).

  official_ref.py IN OUT [IN OUT ...]

From the boxes as the authors' data code holds them before scaling (inclusive pixel indices in the
crop's frame, after clipping and padding) and the proposal ids, it checks the clipped boxes of the
views without jitter against the proposals, then does everything after: scale to the view and
truncate to int, the level from that int box, normalise by the crop, flip, RoIAlign of every box on
every FPN level at the map's own size (scale 1 on normalised boxes times W, H), head, projector,
predictor, and the loss with the (level, slot) x (level, slot) correspondence matrix of equal ids.
R50-C4 (SoCo_C4): RoIAlign 14 on C4 at its size, the res5 head, the slot x slot matrix of equal ids.
Runs on torch 1.13 and 2.x.

IN holds request.json and a bundle (soco_ref.py's format): the model state (state.*) and the views
(view.V: [N, 3, H, W], augmented). request.json:
  options      network options (soco_ref.Network: FPN or C4)
  thresholds   [48, 96, 192, 224]: a box whose size exceeds the last gets no level
  images       per image {width, height, rects: proposals as the authors' [x, y, w, h]}
  views        per view {size, crops: per image [x, y, w, h], flips: per image}
  sets         per box set {view, jittered, inclusive: [N][K][4], ids: [N][K]}
  pairs        [[a, b], ...] of sets; names
OUT/result.json: {loss, pairs: [per pair], levels: per set [N][K], boxes: per set [N][K][4] in view
pixels (flip applied), checked: boxes checked against the proposals}.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soco_ref  # noqa: E402


def convert(rect):
    """The authors' [x, y, w, h] -> inclusive [x1, y1, x1 + w - 1, y1 + h - 1]."""
    x, y, w, h = rect
    return [x, y, x + w - 1, y + h - 1]


def clip(box, crop):
    """Inclusive box into the crop [x, y, w, h]'s frame; None when they do not overlap (strictly)."""
    cx, cy, cw, ch = crop
    ix1, iy1, ix2, iy2 = cx, cy, cx + cw - 1, cy + ch - 1
    bx1, by1, bx2, by2 = box
    if not (ix1 < bx2 and bx1 < ix2 and iy1 < by2 and by1 < iy2):
        return None
    return [max(ix1, bx1) - cx, max(iy1, by1) - cy, min(ix2, bx2) - cx, min(iy2, by2) - cy]


def check_clipped(req):
    """Boxes of views without jitter are the proposal of their id, clipped to the crop (the whole
    view when the draw had nothing: then that proposal does not overlap the crop either)."""
    n = 0
    for s in req['sets']:
        if s['jittered']:
            continue
        view = req['views'][s['view']]
        for i, (boxes, ids) in enumerate(zip(s['inclusive'], s['ids'])):
            img = req['images'][i]
            rects = img['rects'] or [[0, 0, img['width'], img['height']]]  # the whole image: [0, 0, W-1, H-1]
            crop = view['crops'][i]
            for box, pid in zip(boxes, ids):
                want = clip(convert(rects[pid]), crop) or [0, 0, crop[2] - 1, crop[3] - 1]
                assert box == want, f'set {s} image {i} id {pid}: {box} != {want}'
                n += 1
    return n


def scale_and_level(inclusive, crop, size, thresholds):
    """The authors' resize_bboxs + astype(int) + assign_bboxs_to_feature_map for one image's set."""
    b = np.array(inclusive, dtype=np.float64)
    r = np.copy(b)
    r[:, 0] = r[:, 0] / crop[2] * size
    r[:, 1] = r[:, 1] / crop[3] * size
    r[:, 2] = r[:, 2] / crop[2] * size
    r[:, 3] = r[:, 3] / crop[3] * size
    r = r.astype(int)
    levels = []
    for x1, y1, x2, y2 in r:
        s = math.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))
        levels.append(next((j for j, t in enumerate(thresholds) if s <= t), -1))
    return levels


def normalised(inclusive, crop, flip):
    """bboxs_to_tensor (x / crop w, y / crop h, float32) and the flip x1' = 1 - x2, x2' = 1 - x1."""
    b = np.array(inclusive, dtype=np.float64)
    b[:, [0, 2]] /= crop[2]
    b[:, [1, 3]] /= crop[3]
    t = torch.tensor(b, dtype=torch.float32)
    if flip:
        t = torch.stack([1.0 - t[:, 2], t[:, 1], 1.0 - t[:, 0], t[:, 3]], dim=1)
    return t


def head(net, pooled):
    rh = net.roi_heads
    if isinstance(rh, soco_ref.Res5ROIHeads):
        x = rh.res5(pooled)
        return F.avg_pool2d(x, x.shape[-1]).flatten(1)
    return rh.head(pooled)


def embed_every_level(net, feats, boxes, then, res):
    """[N, P*K, D]: every box on every level (boxes [N, K, 4] normalised, times the map's W, H)."""
    n, k, _ = boxes.shape
    index = torch.arange(n, dtype=torch.float32).repeat_interleave(k).reshape(-1, 1)
    out = []
    for f in feats:
        h, w = f.shape[-2:]
        b = boxes.reshape(-1, 4) * torch.tensor([w, h, w, h], dtype=torch.float32)
        pooled = roi_align(f, torch.cat([index, b], dim=1), res, 1.0, -1, True)
        z = net.projector(head(net, pooled))
        z = then(z) if then else z
        out.append(F.normalize(z, dim=1).reshape(n, k, -1))
    return torch.cat(out, dim=1)


def assigned(levels, ids, not_used, p):
    """[N, P*K]: the id at (level, slot) when the slot's box has that level, else not_used."""
    n, k = len(ids), len(ids[0])
    a = torch.full((n, p, k), float(not_used))
    for i in range(n):
        for j in range(k):
            if levels[i][j] >= 0:
                a[i, levels[i][j], j] = float(ids[i][j])
    return a.reshape(n, p * k)


def term(q, t, corr):
    sim = torch.bmm(q, t.transpose(1, 2))
    return -2 * ((sim * corr).sum(-1).sum(-1) / (corr.sum(-1).sum(-1) + 1e-6)).mean()


def main(in_dir, out_dir):
    with open(os.path.join(in_dir, 'request.json')) as f:
        req = json.load(f)
    torch.set_num_threads(1)
    checked = check_clipped(req)
    b = soco_ref.read_bundle(in_dir)
    o = req['options']
    c4 = o['arch'] == 'c4'
    assert c4 or (o['fpn'] and o['head']), 'the reference covers the FPN variant with its head, and C4'
    # The architecture from RECIPE's numbers (soco_ref): only the variant comes from the request.
    model = soco_ref.SoCo(soco_ref.variant({'depth': o['depth'], 'arch': o['arch']}))
    model.load_state_dict({k[len('state.'):]: v for k, v in b.items() if k.startswith('state.')}, strict=True)
    model.train()
    levels, boxes, norm = [], [], []
    for s in req['sets']:
        view = req['views'][s['view']]
        lv, nb = [], []
        for i, inc in enumerate(s['inclusive']):
            lv.append(scale_and_level(inc, view['crops'][i], view['size'], req['thresholds']))
            nb.append(normalised(inc, view['crops'][i], view['flips'][i]))
        levels.append(lv)
        norm.append(torch.stack(nb))
        boxes.append((norm[-1] * view['size']).tolist())
    # C4 has one map: every slot is on it.
    p = 1 if c4 else 4
    slots = [[[0] * len(ids) for ids in s['ids']] for s in req['sets']] if c4 else levels
    images = [b[f'view.{v}'] for v in range(len(req['views']))]

    def run(net, then):
        feats = [net.features(img) for img in images]
        return [embed_every_level(net, feats[s['view']], norm[i], then, 14 if c4 else 7) for i, s in enumerate(req['sets'])]

    online = run(model.online, model.predictor)
    with torch.no_grad():
        target = run(model.target, None)
    total, pairs = 0.0, []
    for a, c in req['pairs']:
        corr = (assigned(slots[a], req['sets'][a]['ids'], -1 - a, p).unsqueeze(2)
                == assigned(slots[c], req['sets'][c]['ids'], -1 - c, p).unsqueeze(1)).float()
        v = term(online[a], target[c], corr) + term(online[c], target[a], corr.transpose(1, 2))
        pairs.append(float(v.detach()))
        total = total + v
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'result.json'), 'w') as f:
        json.dump({'loss': float(total.detach()), 'pairs': pairs, 'levels': levels, 'boxes': boxes, 'checked': checked}, f)


if __name__ == '__main__':
    # Several cases per process: the torch import is paid once.
    for i in range(1, len(sys.argv), 2):
        main(sys.argv[i], sys.argv[i + 1])
