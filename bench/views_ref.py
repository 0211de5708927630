#!/usr/bin/python3
"""The authors' per-image view pipeline (PIL + torchvision), the reference for bench/views.ts.

usage: views_ref.py REPS FILE...   Prints the median over REPS of the mean CPU seconds per image
(time.process_time, one thread), for the whole pipeline: open + convert RGB, V1 = whole image
resized to 224x224, V2 = RandomResizedCrop(224, scale (0.5, 1)) and V3 = RandomResizedCrop(112,
scale (0.5, 1)) of the raw image (the authors' layout), each view with RandomHorizontalFlip,
RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8), RandomGrayscale(0.2), GaussianBlur via
PIL ImageFilter (sigma ~ U[0.1, 2], p 1.0 on V1 and 0.1 on the others, as BYOL/MoCo v2 code
does), Solarize (PIL ImageOps, threshold 128, p 0 on V1 and 0.2 on the others), ToTensor,
Normalize; boxes (4 per image) follow every crop, resize and flip as in the authors' code.
"""
import random, statistics, sys, time
import torch
from PIL import Image, ImageFilter, ImageOps
import torchvision.transforms as T
import torchvision.transforms.functional as F

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class GaussianBlur:
    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


class Solarize:
    def __call__(self, img):
        return ImageOps.solarize(img, 128)


def colour(blur_p, solarize_p):
    return T.Compose([
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([GaussianBlur()], p=blur_p),
        T.RandomApply([Solarize()], p=solarize_p),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


COLOUR = [colour(1.0, 0.0), colour(0.1, 0.2), colour(0.1, 0.2)]


def crop_boxes(boxes, i, j, h, w, size):
    # the authors' coordinate bookkeeping: shift by the crop, scale to the output, clip
    b = boxes.clone()
    b[:, 0::2] = ((b[:, 0::2] - j) * size / w).clamp(0, size)
    b[:, 1::2] = ((b[:, 1::2] - i) * size / h).clamp(0, size)
    return b


def flip_boxes(boxes, size):
    b = boxes.clone()
    b[:, 0], b[:, 2] = size - boxes[:, 2], size - boxes[:, 0]
    return b


def views(path, boxes):
    img = Image.open(path).convert('RGB')
    W, H = img.size
    out = []
    # V1: the whole image squashed to 224
    v = img.resize((224, 224), Image.BILINEAR)
    vb = crop_boxes(boxes, 0, 0, H, W, 224)
    crops = [(v, vb, 224)]
    for size in (224, 112):
        i, j, h, w = T.RandomResizedCrop.get_params(img, (0.5, 1.0), (3 / 4, 4 / 3))
        crops.append((F.resized_crop(img, i, j, h, w, [size, size]), crop_boxes(boxes, i, j, h, w, size), size))
    for k, (v, vb, size) in enumerate(crops):
        if random.random() < 0.5:
            v, vb = F.hflip(v), flip_boxes(vb, size)
        out.append((COLOUR[k](v), vb))
    return out


def main():
    reps, files = int(sys.argv[1]), sys.argv[2:]
    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    sizes = {f: Image.open(f).size for f in files}
    boxes = {f: torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.3, 0.2, 0.9, 0.8], [0.0, 0.5, 0.4, 1.0], [0.2, 0.2, 0.7, 0.7]])
             * torch.tensor([sizes[f][0], sizes[f][1], sizes[f][0], sizes[f][1]]) for f in files}
    for f in files:  # warm-up: page cache, lazy imports
        views(f, boxes[f])
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        for f in files:
            views(f, boxes[f])
        times.append((time.process_time() - t0) / len(files))
    print(statistics.median(times))


if __name__ == '__main__':
    main()
