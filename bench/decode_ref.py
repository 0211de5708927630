#!/usr/bin/python3
"""PIL reference for bench/decode.ts: the authors' per-image decode, single thread.

usage: decode_ref.py MODE REPS FILE...   MODE: v1 (open + convert RGB + resize 224x224 BILINEAR,
as torchvision's Resize on a PIL image) | full (open + convert RGB). Prints the median over REPS
of the mean seconds per image.
"""
import statistics, sys, time
from PIL import Image


def main():
    mode, reps, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

    def one(f):
        im = Image.open(f).convert('RGB')
        if mode == 'v1':
            im = im.resize((224, 224), Image.BILINEAR)
        im.tobytes  # noqa: the pixels are materialised by convert/resize already
        return im

    for f in files:  # warm-up: page cache, lazy imports
        one(f)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for f in files:
            one(f)
        times.append((time.perf_counter() - t0) / len(files))
    print(statistics.median(times))


if __name__ == '__main__':
    main()
