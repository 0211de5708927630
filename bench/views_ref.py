#!/usr/bin/python3
"""The view pipeline with PIL + torchvision, as the SoCo authors run it: the reference for
bench/views.ts. It stays alive for the whole benchmark so that its passes alternate with ours and
it warms up exactly as ours does.

usage: views_ref.py PROPOSALS.json FILE...
PROPOSALS.json: {file: [[x1, y1, x2, y2], ...]}, the proposals ours reads from its store.
Commands on stdin, one per line, each answered with one number on stdout:
  warmup LAYOUT N    N untimed passes over the files
  time LAYOUT REPS   the median over REPS passes of the CPU seconds per image (time.process_time:
                     the whole process; one torch thread)
A pass is every file once, in order, and ends with the batch: the views of all images stacked.

LAYOUT (each the same work as the bench/views.ts line of that layout):
  authors  open + convert('RGB'); V1 = the whole image resized to 224x224; V2 =
           RandomResizedCrop(224, scale (0.5, 1), ratio (3/4, 4/3)) and V3 = RandomResizedCrop(112)
           of the raw image; proposals intersecting every view, clipped to each
  paper    open with draft('RGB', (224, 224)) (JPEG DCT scaling to the smallest scale >= 224, as
           ours decodes) + convert('RGB'); V1 = resized to 224x224; V2 = RandomResizedCrop(224) of
           V1; V3 = V2 resized to 112x112; proposals inside every view
  host     the host stage of `paper` when the pixels are augmented on the training device: the
           draft decode into a uint8 tensor and every random draw and box computation of `paper`,
           no pixel work after the decode
Boxes (every layout): K = 4 of the proposals common to all views, drawn without replacement
(padded with replacement; none: the whole image), jitter on the V1 copies (p 0.5 per box, each of
x, y, w, h by r * w or r * h, r ~ U[-0.1, 0.1]), then per view clipped, scaled to its pixels and
flipped with it. Per view: RandomHorizontalFlip(0.5), RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1),
p 0.8), RandomGrayscale(0.2), Gaussian blur (PIL ImageFilter, sigma ~ U[0.1, 2]; p 1.0 on V1,
0.1 on the others), solarize (PIL ImageOps, threshold 128; p 0 on V1, 0.2 on the others),
ToTensor, Normalize(ImageNet mean, std).
"""
import json
import random
import statistics
import sys
import time
import warnings

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter, ImageOps

K = 4
SCALE, RATIO = (0.5, 1.0), (3 / 4, 4 / 3)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BLUR_P, SOLARIZE_P = (1.0, 0.1, 0.1), (0.0, 0.2, 0.2)
JITTER = T.ColorJitter(0.4, 0.4, 0.2, 0.1)


class GaussianBlur:
    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


class Solarize:
    def __call__(self, img):
        return ImageOps.solarize(img, 128)


def colour(v):
    return T.Compose([
        T.RandomApply([JITTER], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([GaussianBlur()], p=BLUR_P[v]),
        T.RandomApply([Solarize()], p=SOLARIZE_P[v]),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


COLOUR = [colour(v) for v in range(3)]


def colour_draws(v):
    """The random draws of COLOUR[v] without the pixel work (the host layout)."""
    if random.random() < 0.8:
        T.ColorJitter.get_params(JITTER.brightness, JITTER.contrast, JITTER.saturation, JITTER.hue)
    random.random()  # grayscale
    if random.random() < BLUR_P[v]:
        random.uniform(0.1, 2.0)
    random.random()  # solarize


def crop_params(width, height):
    """RandomResizedCrop.get_params on a width x height image: (top, left, h, w)."""
    return T.RandomResizedCrop.get_params(torch.empty((1, height, width), dtype=torch.uint8), SCALE, RATIO)


def common_boxes(props, regions, inside):
    """K proposals present in every region (x1, y1, x2, y2 in image pixels)."""
    keep = torch.ones(len(props), dtype=torch.bool)
    for x1, y1, x2, y2 in regions:
        if inside:
            keep &= (props[:, 0] >= x1) & (props[:, 1] >= y1) & (props[:, 2] <= x2) & (props[:, 3] <= y2)
        else:
            keep &= (props[:, 0] < x2) & (props[:, 2] > x1) & (props[:, 1] < y2) & (props[:, 3] > y1)
    common = keep.nonzero().flatten()
    if len(common) == 0:
        return None
    ids = common[torch.randperm(len(common))[:K]]
    if len(ids) < K:
        ids = torch.cat([ids, common[torch.randint(len(common), (K - len(ids),))]])
    return props[ids]


def jitter(b):
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    on = (torch.rand(len(b)) < 0.5).float()
    r = (torch.rand(len(b), 4) * 0.2 - 0.1) * on[:, None]
    x, y = b[:, 0] + r[:, 0] * w, b[:, 1] + r[:, 1] * h
    w, h = w + r[:, 2] * w, h + r[:, 3] * h
    return torch.stack([x, y, x + w, y + h], 1)


def to_view(b, region, size, flip):
    x1, y1, x2, y2 = region
    out = torch.empty_like(b)
    out[:, 0::2] = (b[:, 0::2].clamp(x1, x2) - x1) * (size / (x2 - x1))
    out[:, 1::2] = (b[:, 1::2].clamp(y1, y2) - y1) * (size / (y2 - y1))
    if flip:
        out[:, 0], out[:, 2] = size - out[:, 2], size - out[:, 0]
    return out


def sample(layout, path, props):
    """One image's views (or, for host, its uint8 pixels) and boxes."""
    img = Image.open(path)
    if layout != 'authors':
        img.draft('RGB', (224, 224))
    img = img.convert('RGB')
    W, H = img.size
    if layout == 'authors':
        v1 = img.resize((224, 224), Image.BILINEAR)
        crops = [crop_params(W, H), crop_params(W, H)]
        regions = [(0, 0, W, H)] + [(j, i, j + w, i + h) for i, j, h, w in crops]
        pixels = [v1] + [F.resized_crop(img, i, j, h, w, [s, s]) for (i, j, h, w), s in zip(crops, (224, 112))]
    else:
        # paper: V2 is a crop of V1 (224 pixels), V3 is V2 at half size
        i, j, h, w = crop_params(224, 224)
        sx, sy = W / 224, H / 224
        region = (j * sx, i * sy, (j + w) * sx, (i + h) * sy)
        regions = [(0, 0, W, H), region, region]
        if layout == 'host':
            pixels = torch.from_numpy(np.asarray(img))  # read-only numpy view of PIL's bytes: no second copy
        else:
            v1 = img.resize((224, 224), Image.BILINEAR)
            v2 = F.resized_crop(v1, i, j, h, w, [224, 224])
            pixels = [v1, v2, v2.resize((112, 112), Image.BILINEAR)]
    flips = [random.random() < 0.5 for _ in range(3)]
    boxes = common_boxes(props, regions, inside=layout != 'authors')
    if boxes is None:
        boxes = torch.tensor([[0.0, 0.0, W, H]]).repeat(K, 1)
    src = [jitter(boxes), boxes, boxes]
    vboxes = [to_view(b, r, s, f) for b, r, s, f in zip(src, regions, (224, 224, 112), flips)]
    if layout == 'host':
        for v in range(3):
            colour_draws(v)
        return pixels, vboxes
    views = [COLOUR[v](F.hflip(p) if f else p) for v, (p, f) in enumerate(zip(pixels, flips))]
    return views, vboxes


def one_pass(layout, files, props):
    out = [sample(layout, f, props[f]) for f in files]
    if layout == 'host':
        return out
    views = [torch.stack([o[0][v] for o in out]) for v in range(3)]
    boxes = [torch.cat([torch.cat([torch.full((K, 1), n, dtype=torch.float32), o[1][v]], 1) for n, o in enumerate(out)])
             for v in range(3)]
    return views, boxes


def main():
    with open(sys.argv[1]) as f:
        props = {k: torch.tensor(v, dtype=torch.float32).reshape(-1, 4) for k, v in json.load(f).items()}
    files = sys.argv[2:]
    torch.set_num_threads(1)
    warnings.filterwarnings('ignore', 'The given NumPy array is not writable')
    random.seed(0)
    torch.manual_seed(0)
    for line in sys.stdin:
        cmd, layout, n = line.split()
        if cmd == 'warmup':
            for _ in range(int(n)):
                one_pass(layout, files, props)
            print(0, flush=True)
        elif cmd == 'time':
            times = []
            for _ in range(int(n)):
                t0 = time.process_time()
                one_pass(layout, files, props)
                times.append((time.process_time() - t0) / len(files))
            print(statistics.median(times), flush=True)
        else:
            raise SystemExit(f'unknown command {cmd}')


if __name__ == '__main__':
    main()
