#!/usr/bin/python3
"""torchvision reference for test/augment.test.ts (Debian's torchvision 0.14, tensor path).

usage: augment_ref.py SPEC.json
SPEC: {"cases": [{"name", "input", "shape": [N,3,H,W], "op", ...params}]}. Each input is raw
float32 NCHW in [0, 1]; each case writes DIR/<name>.f32 next to the spec. Every op runs image by
image through torchvision.transforms.functional with that image's scalar parameters, exactly as
torchvision's transforms call it, so the batched TypeScript ops are checked against the
unbatched originals.
"""
import json, os, sys
import numpy as np
import torch
import torchvision.transforms.functional as F


def load(path, shape):
    return torch.from_numpy(np.fromfile(path, dtype=np.float32).reshape(shape))


def jitter(img, j):
    # ColorJitter.forward with fn_idx = j["order"] and the drawn factors.
    for fn_id in j["order"]:
        if fn_id == 0:
            img = F.adjust_brightness(img, j["brightness"])
        elif fn_id == 1:
            img = F.adjust_contrast(img, j["contrast"])
        elif fn_id == 2:
            img = F.adjust_saturation(img, j["saturation"])
        else:
            img = F.adjust_hue(img, j["hue"])
    return img


def pipeline(img, p, cfg):
    # BYOL view transform after the geometry: flip, RandomApply(ColorJitter), RandomGrayscale,
    # GaussianBlur, Solarize, Normalize -- with the sample's drawn outcomes.
    if p["flip"]:
        img = F.hflip(img)
    if p["jitter"] is not None:
        img = jitter(img, p["jitter"])
    if p["grayscale"]:
        img = F.rgb_to_grayscale(img, num_output_channels=3)
    if p["blurSigma"] is not None:
        k = cfg["blurKernel"]
        img = F.gaussian_blur(img, [k, k], [p["blurSigma"], p["blurSigma"]])
    if p["solarize"]:
        img = F.solarize(img, cfg["solarizeThreshold"])
    if cfg["normalize"] is not None:
        img = F.normalize(img, cfg["normalize"]["mean"], cfg["normalize"]["std"])
    return img


def one(op, img, i, c):
    if op == "brightness":
        return F.adjust_brightness(img, c["factors"][i])
    if op == "contrast":
        return F.adjust_contrast(img, c["factors"][i])
    if op == "saturation":
        return F.adjust_saturation(img, c["factors"][i])
    if op == "hue":
        return F.adjust_hue(img, c["factors"][i])
    if op == "grayscale":
        return F.rgb_to_grayscale(img, num_output_channels=3)
    if op == "blur":
        k, s = c["kernel"], c["sigmas"][i]
        return F.gaussian_blur(img, [k, k], [s, s])
    if op == "solarize":
        return F.solarize(img, c["threshold"])
    if op == "hflip":
        return F.hflip(img)
    if op == "normalize":
        return F.normalize(img, c["mean"], c["std"])
    if op == "resized_crop":
        t, l, h, w = c["crops"][i]
        return F.resized_crop(img, t, l, h, w, [c["size"], c["size"]], antialias=True)
    if op == "resize":
        return F.resize(img, [c["size"], c["size"]], antialias=True)
    if op == "pipeline":
        return pipeline(img, c["params"][i], c["cfg"])
    raise ValueError(f"unknown op {op}")


def main():
    spec_path = sys.argv[1]
    out_dir = os.path.dirname(os.path.abspath(spec_path))
    spec = json.load(open(spec_path))
    torch.set_num_threads(1)
    for c in spec["cases"]:
        x = load(c["input"], c["shape"])
        out = torch.stack([one(c["op"], x[i], i, c) for i in range(x.shape[0])])
        out.contiguous().numpy().astype(np.float32).tofile(os.path.join(out_dir, c["name"] + ".f32"))
        print(c["name"], list(out.shape))


if __name__ == "__main__":
    main()
