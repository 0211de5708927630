#!/usr/bin/python3
"""PyTorch reference for test/torch_ops.test.ts: runs every op case of the batch in one process.

usage: ops_ref.py DIR   (DIR/manifest.json written by the test; results go to DIR/results.json)

Each case has inputs (raw little-endian files: float32, float64, int64, int32, uint8 or bool as
uint8) with requires_grad flags, a Python body computing the outputs from the list `x`, and per
output an optional upstream-gradient file. The script runs the body, backpropagates
sum(out_k * upstream_k) over the outputs that require grad, and writes every output and every
input gradient as a raw file plus its dtype and shape. Half-precision results are written as
float32 (exact widening) with their real dtype reported.
"""
import json
import math
import os
import sys
import textwrap
import traceback

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF

NP = {'float32': np.float32, 'float64': np.float64, 'int64': np.int64, 'int32': np.int32,
      'uint8': np.uint8, 'bool': np.uint8}


def load(spec, d):
    arr = np.fromfile(os.path.join(d, spec['file']), dtype=NP[spec['dtype']]).reshape(spec['shape'])
    t = torch.from_numpy(arr.copy())
    return t.bool() if spec['dtype'] == 'bool' else t


def dump(t, d, name):
    t = t.detach()
    dtype = str(t.dtype).replace('torch.', '')
    if dtype in ('float16', 'bfloat16'):
        t = t.float()
    arr = t.contiguous().numpy()
    if dtype == 'bool':
        arr = arr.astype(np.uint8)
    arr.tofile(os.path.join(d, name))
    return {'file': name, 'dtype': dtype, 'shape': list(t.shape)}


def main():
    d = sys.argv[1]
    with open(os.path.join(d, 'manifest.json')) as f:
        manifest = json.load(f)
    torch.set_num_threads(manifest.get('threads', 1))
    results = []
    for i, case in enumerate(manifest['cases']):
        try:
            x = [load(s, d) for s in case['inputs']]
            for t, s in zip(x, case['inputs']):
                if s.get('grad'):
                    t.requires_grad_(True)
            body = case['py']
            if 'return' not in body:
                body = 'return ' + body
            ns = {'torch': torch, 'F': F, 'tv': torchvision, 'TF': TF, 'math': math, 'np': np}
            exec('def __case(x):\n' + textwrap.indent(body, '    '), ns)
            out = ns['__case'](x)
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            outs = [o if isinstance(o, torch.Tensor) else torch.tensor(o) for o in outs]
            ups = case.get('upstream') or [None] * len(outs)
            if len(ups) != len(outs):
                raise ValueError(f'{len(outs)} outputs but {len(ups)} upstream gradients')
            pairs = [(o, load(u, d)) for o, u in zip(outs, ups) if u is not None and o.requires_grad]
            if pairs:
                torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
            res = {'outputs': [dump(o, d, f'{i}_out{k}.bin') for k, o in enumerate(outs)],
                   'grads': [dump(t.grad, d, f'{i}_grad{j}.bin') if (s.get('grad') and t.grad is not None) else None
                             for j, (t, s) in enumerate(zip(x, case['inputs']))]}
        except Exception:
            res = {'error': traceback.format_exc(limit=3)}
        results.append(res)
    with open(os.path.join(d, 'results.json'), 'w') as f:
        json.dump({'torch': torch.__version__, 'torchvision': torchvision.__version__, 'results': results}, f)


if __name__ == '__main__':
    main()
