#!/usr/bin/python3
"""PIL side of bench/decode.ts, one image at a time on one thread, kept alive so that its passes
alternate with ours.

usage: decode_ref.py FILE...   Commands on stdin, one per line:
  time MODE REPS    answers the median over REPS passes (every file once) of the mean seconds
                    per image
  dump MODE DIR     writes each file's decoded RGB bytes to DIR/<basename>.rgb; answers 'ok'
MODE: draft   Image.open + draft('RGB', (224, 224)) (JPEG DCT scaling to the smallest scale
              >= 224) + convert('RGB') + resize((224, 224), BILINEAR)
      nodraft the same without draft(): the full-size decode the authors' pipeline pays
      full    Image.open + convert('RGB')
"""
import os
import statistics
import sys
import time

from PIL import Image


def decode(mode, f):
    im = Image.open(f)
    if mode == 'draft':
        im.draft('RGB', (224, 224))
    im = im.convert('RGB')  # decodes: PIL is lazy until here
    if mode != 'full':
        im = im.resize((224, 224), Image.BILINEAR)
    return im


def main():
    files = sys.argv[1:]
    for line in sys.stdin:
        cmd, mode, arg = line.split()
        if cmd == 'time':
            times = []
            for _ in range(int(arg)):
                t0 = time.perf_counter()
                for f in files:
                    decode(mode, f)
                times.append((time.perf_counter() - t0) / len(files))
            print(statistics.median(times), flush=True)
        elif cmd == 'dump':
            for f in files:
                with open(os.path.join(arg, os.path.basename(f) + '.rgb'), 'wb') as out:
                    out.write(decode(mode, f).tobytes())
            print('ok', flush=True)
        else:
            raise SystemExit(f'unknown command {cmd}')


if __name__ == '__main__':
    main()
