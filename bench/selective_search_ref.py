#!/usr/bin/python3
"""Reference selective search: what the SoCo authors ran (their fixed copy of the AlpacaDB
package), rebuilt on Debian's scikit-image so the native version can be checked box for box.

Semantics kept on purpose (see docs/proposal-store.md):
- felzenszwalb(img_as_float(rgb), scale, sigma, min_size) from skimage.
- rgb2hsv of the 0..255 float image, 25-bin histograms over (0, 255): H and S lie in [0, 1],
  so they always fall in bin 0 and only V discriminates (the authors' behaviour).
- LBP(P=8, R=1) per RGB channel, 10-bin histograms over (0, 255) (the authors' fix).
- Neighbours: some corner of the later region's box lies strictly inside the earlier one's.
- Greedy merge of the most similar pair; ties go to the pair inserted last into the similarity
  dict (the authors take sorted(S.items())[-1]); every region (initial and merged) yields a box.
- Sums of histogram intersections are sequential left-to-right double sums, as Python's sum().

Usage (Debian's /usr/bin/python3):
  selective_search_ref.py ss [--scale S --sigma s --min-size m --labels DIR] IMAGE...
      one JSON line per image: path, width, height, seconds, seg_seconds, nsegments,
      rects (authors' [x, y, w, h] for every region, in region order)
  selective_search_ref.py felz --labels DIR [--scale --sigma --min-size] IMAGE...
      skimage labels (int32) and the decoded RGB bytes written to DIR, one JSON line per image
  selective_search_ref.py decode IMAGE OUT.rgb [--resize WxH]
      raw RGB HWC bytes (PIL, .convert('RGB'), then resized bilinear); prints width, height
  selective_search_ref.py serve [--scale --sigma --min-size] INPUTS.json
      for bench/selective_search.ts: INPUTS.json lists {rgb, width, height} (raw RGB files, the
      bytes ours reads); every import happens before the first command. Commands on stdin:
        ss I REPS       the authors' algorithm on input I, REPS times: {seconds (median), rects}
        opencv I REPS   OpenCV's single-strategy selective search (speed yardstick only: other
                        boxes), REPS times: {seconds (median), nboxes}
  selective_search_ref.py memory ss|opencv [--scale --sigma --min-size] INPUTS.json I
      one search on input I in this fresh process: {mb} = peak RSS during the search over the
      RSS before it (peak reset through /proc/self/clear_refs after the imports and the load)
  selective_search_ref.py json-store STORE.json KEYS.json
      the authors' proposal file as their loader reads it (json.load), then a lookup of each key
      of KEYS.json: {open_ms, get_us (mean per lookup), mb (RSS growth)}
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import skimage.color
import skimage.feature
import skimage.segmentation
import skimage.util


def load_rgb(path, resize=None):
    """PIL's RGB pixels of an image file, optionally resized bilinear to resize = (w, h)."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert('RGB')
        if resize:
            im = im.resize(resize, Image.BILINEAR)
        return np.asarray(im)


def region_stats(rgb, labels, n):
    """Bounding boxes, sizes, colour and texture histograms per initial region."""
    h, w = labels.shape
    flat = labels.ravel()
    ys, xs = np.divmod(np.arange(h * w), w)
    min_x = np.full(n, 0xffff, np.int64)
    min_y = np.full(n, 0xffff, np.int64)
    max_x = np.zeros(n, np.int64)
    max_y = np.zeros(n, np.int64)
    np.minimum.at(min_x, flat, xs)
    np.minimum.at(min_y, flat, ys)
    np.maximum.at(max_x, flat, xs)
    np.maximum.at(max_y, flat, ys)
    size = np.bincount(flat, minlength=n)
    img = rgb.astype(np.float64)  # the authors' 4-channel float image carries 0..255 RGB
    hsv = skimage.color.rgb2hsv(img)
    tex = np.stack([skimage.feature.local_binary_pattern(img[:, :, c], 8, 1.0)
                    for c in range(3)], axis=-1)

    def hist(values, bins):
        # np.histogram's bin assignment over (0, 255) for every channel, counted per region
        out = []
        for c in range(3):
            v = values[:, :, c].ravel()
            edges = np.linspace(0.0, 255.0, bins + 1)
            idx = (v * (bins / 255.0)).astype(np.intp)
            idx[idx == bins] -= 1
            idx[v < edges[idx]] -= 1
            idx[(v >= edges[idx + 1]) & (idx != bins - 1)] += 1
            out.append(np.bincount(flat * bins + idx, minlength=n * bins).reshape(n, bins))
        return np.concatenate(out, axis=1).astype(np.float64) / size[:, None]

    hist_c = hist(hsv, 25)
    hist_t = hist(tex, 10)
    return [dict(min_x=int(min_x[k]), min_y=int(min_y[k]), max_x=int(max_x[k]),
                 max_y=int(max_y[k]), size=int(size[k]), hist_c=hist_c[k], hist_t=hist_t[k])
            for k in range(n)]


def seq_sum(v):
    return float(np.cumsum(v)[-1])  # strictly left-to-right, like Python's sum()


def similarity(a, b, imsize):
    colour = seq_sum(np.minimum(a['hist_c'], b['hist_c']))
    texture = seq_sum(np.minimum(a['hist_t'], b['hist_t']))
    size = 1.0 - (a['size'] + b['size']) / imsize
    bbsize = ((max(a['max_x'], b['max_x']) - min(a['min_x'], b['min_x']))
              * (max(a['max_y'], b['max_y']) - min(a['min_y'], b['min_y'])))
    fill = 1.0 - (bbsize - a['size'] - b['size']) / imsize
    return colour + texture + size + fill


def box_neighbours(R):
    """Pairs (a, b), a < b, where a corner of b's box lies strictly inside a's box."""
    n = len(R)
    mnx = np.array([r['min_x'] for r in R]); mxx = np.array([r['max_x'] for r in R])
    mny = np.array([r['min_y'] for r in R]); mxy = np.array([r['max_y'] for r in R])
    pairs = []
    for a in range(n - 1):
        b = np.arange(a + 1, n)
        inx0 = (mnx[a] < mnx[b]) & (mnx[b] < mxx[a])
        inx1 = (mnx[a] < mxx[b]) & (mxx[b] < mxx[a])
        iny0 = (mny[a] < mny[b]) & (mny[b] < mxy[a])
        iny1 = (mny[a] < mxy[b]) & (mxy[b] < mxy[a])
        hit = (inx0 & iny0) | (inx1 & iny1) | (inx0 & iny1) | (inx1 & iny0)
        pairs.extend((a, int(x)) for x in b[hit])
    return pairs


def merge(a, b):
    s = a['size'] + b['size']
    return dict(min_x=min(a['min_x'], b['min_x']), min_y=min(a['min_y'], b['min_y']),
                max_x=max(a['max_x'], b['max_x']), max_y=max(a['max_y'], b['max_y']), size=s,
                hist_c=(a['hist_c'] * a['size'] + b['hist_c'] * b['size']) / s,
                hist_t=(a['hist_t'] * a['size'] + b['hist_t'] * b['size']) / s)


def selective_search(rgb, scale, sigma, min_size):
    t0 = time.perf_counter()
    labels = skimage.segmentation.felzenszwalb(skimage.util.img_as_float(rgb), scale=scale,
                                               sigma=sigma, min_size=min_size)
    seg_s = time.perf_counter() - t0
    n = int(labels.max()) + 1
    imsize = labels.size
    R = region_stats(rgb, labels, n)
    S = {}
    for a, b in box_neighbours(R):
        S[(a, b)] = similarity(R[a], R[b], imsize)
    while S:
        best = None
        for k, v in S.items():  # the last of the maximal pairs, as sorted(...)[-1]
            if best is None or v >= bestv:
                best, bestv = k, v
        i, j = best
        t = len(R)
        R.append(merge(R[i], R[j]))
        touched = [k for k in S if i in k or j in k]
        for k in touched:
            del S[k]
        for k in touched:
            if k != (i, j):
                nb = k[1] if k[0] in (i, j) else k[0]
                S[(t, nb)] = similarity(R[t], R[nb], imsize)
    rects = [[r['min_x'], r['min_y'], r['max_x'] - r['min_x'], r['max_y'] - r['min_y']]
             for r in R]
    return labels, rects, seg_s, n


def opencv_search(bgr, scale, sigma, min_size):
    from cv2.ximgproc import segmentation as seg
    ss = seg.createSelectiveSearchSegmentation()
    gs = seg.createGraphSegmentation(sigma, scale, min_size)
    strat = seg.createSelectiveSearchSegmentationStrategyMultiple(
        seg.createSelectiveSearchSegmentationStrategyColor(),
        seg.createSelectiveSearchSegmentationStrategyTexture(),
        seg.createSelectiveSearchSegmentationStrategySize(),
        seg.createSelectiveSearchSegmentationStrategyFill())
    ss.setBaseImage(bgr)
    ss.addImage(bgr)
    ss.addGraphSegmentation(gs)
    ss.addStrategy(strat)
    return ss.process()


def import_opencv():
    import cv2
    cv2.setNumThreads(1)


def load_inputs(manifest):
    with open(manifest) as f:
        return [np.fromfile(m['rgb'], np.uint8).reshape(m['height'], m['width'], 3) for m in json.load(f)]


def kb(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def serve(opts, inputs):
    import_opencv()
    bgr = [np.ascontiguousarray(rgb[:, :, ::-1]) for rgb in inputs]
    args = (opts['scale'], opts['sigma'], opts['min_size'])
    for line in sys.stdin:
        cmd, i, reps = line.split()
        i, times = int(i), []
        for _ in range(int(reps)):
            t0 = time.perf_counter()
            out = selective_search(inputs[i], *args)[1] if cmd == 'ss' else opencv_search(bgr[i], *args)
            times.append(time.perf_counter() - t0)
        res = dict(rects=out) if cmd == 'ss' else dict(nboxes=int(len(out)))
        print(json.dumps(dict(seconds=statistics.median(times), **res)), flush=True)


def memory(what, opts, rgb):
    if what == 'opencv':
        import_opencv()
        rgb = np.ascontiguousarray(rgb[:, :, ::-1])
    search = selective_search if what == 'ss' else opencv_search
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # VmHWM := VmRSS
    before = kb('VmRSS')
    search(rgb, opts['scale'], opts['sigma'], opts['min_size'])
    print(json.dumps(dict(mb=(kb('VmHWM') - before) / 1024)))


def json_store(store, keys_file):
    with open(keys_file) as f:
        keys = json.load(f)
    before = kb('VmRSS')
    t0 = time.perf_counter()
    with open(store) as f:
        props = json.load(f)
    open_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    for k in keys:
        props[k]
    get_us = (time.perf_counter() - t0) * 1e6 / len(keys)
    print(json.dumps(dict(open_ms=open_ms, get_us=get_us, mb=(kb('VmRSS') - before) / 1024)))


def parse(argv):  # noqa: C901 (flat option loop)
    opts = dict(scale=500.0, sigma=0.9, min_size=10, labels=None)
    files = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ('--scale', '--sigma'):
            opts[a[2:]] = float(argv[i + 1]); i += 2
        elif a == '--min-size':
            opts['min_size'] = int(argv[i + 1]); i += 2
        elif a == '--labels':
            opts['labels'] = argv[i + 1]; i += 2
        else:
            files.append(a); i += 1
    return opts, files


def main():
    cmd = sys.argv[1]
    if cmd == 'decode':
        resize = None
        if len(sys.argv) > 5 and sys.argv[4] == '--resize':
            resize = tuple(int(v) for v in sys.argv[5].split('x'))
        rgb = load_rgb(sys.argv[2], resize)
        with open(sys.argv[3], 'wb') as f:
            f.write(np.ascontiguousarray(rgb).tobytes())
        print(json.dumps(dict(width=rgb.shape[1], height=rgb.shape[0])))
        return
    if cmd == 'json-store':
        json_store(sys.argv[2], sys.argv[3])
        return
    if cmd == 'memory':
        opts, rest = parse(sys.argv[3:])
        memory(sys.argv[2], opts, load_inputs(rest[0])[int(rest[1])])
        return
    opts, files = parse(sys.argv[2:])
    if cmd == 'serve':
        serve(opts, load_inputs(files[0]))
        return
    for path in files:
        rgb = load_rgb(path)
        if cmd == 'ss':
            if opts['labels']:
                np.ascontiguousarray(rgb).tofile(os.path.join(opts['labels'], os.path.basename(path) + '.rgb'))
            t0 = time.perf_counter()
            labels, rects, seg_s, n = selective_search(rgb, opts['scale'], opts['sigma'],
                                                        opts['min_size'])
            secs = time.perf_counter() - t0
            if opts['labels']:
                out = os.path.join(opts['labels'], os.path.basename(path) + '.labels')
                labels.astype(np.int32).tofile(out)
            print(json.dumps(dict(path=path, width=rgb.shape[1], height=rgb.shape[0],
                                  seconds=secs, seg_seconds=seg_s, nsegments=n, rects=rects)),
                  flush=True)
        elif cmd == 'felz':  # segmentation only: labels as int32 files in --labels DIR
            labels = skimage.segmentation.felzenszwalb(skimage.util.img_as_float(rgb),
                                                       scale=opts['scale'], sigma=opts['sigma'],
                                                       min_size=opts['min_size'])
            out = os.path.join(opts['labels'], os.path.basename(path) + '.labels')
            labels.astype(np.int32).tofile(out)
            rgb_out = os.path.join(opts['labels'], os.path.basename(path) + '.rgb')
            np.ascontiguousarray(rgb).tofile(rgb_out)
            print(json.dumps(dict(path=path, width=rgb.shape[1], height=rgb.shape[0],
                                  nsegments=int(labels.max()) + 1, labels=out, rgb=rgb_out)),
                  flush=True)
        else:
            raise SystemExit(f'unknown command {cmd}')


if __name__ == '__main__':
    main()
