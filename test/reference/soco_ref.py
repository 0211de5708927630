#!/usr/bin/python3
"""The SoCo network in plain PyTorch + torchvision.ops, the reference for lib/model.

Written from the paper, RECIPE.md and Detectron2's module layout (parameter names are
Detectron2's, so our Detectron2 export loads with a plain load_state_dict), independently of the
TypeScript code: multi-level RoIAlign is Detectron2's mask-and-index_put, not our gather.

  soco_ref.py run IN OUT [IN OUT ...]     one training-mode step per case (see run())
  soco_ref.py train IN OUT                training iterations with LARS and the EMA (see train())
  soco_ref.py nn IN OUT                   torch.nn layers for test/nn.test.ts (see nn_layers())
  soco_ref.py check-export TSV FILE...    an export against Detectron2's key/shape list
  soco_ref.py bench IN_DIR THREADS        timed steps on request, for bench/model.ts

Tensors travel as "bundles": a directory with manifest.json {name: {dtype, shape, file}} and one
raw little-endian file per tensor (test/reference/soco_ref.ts writes and reads them).
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_align

# ---------------------------------------------------------------- bundles

DTYPES = {'float32': (np.float32, torch.float32), 'int64': (np.int64, torch.int64)}


def read_bundle(d):
    with open(os.path.join(d, 'manifest.json')) as f:
        man = json.load(f)
    out = {}
    for name, m in man.items():
        a = np.fromfile(os.path.join(d, m['file']), dtype=DTYPES[m['dtype']][0]).reshape(m['shape'])
        out[name] = torch.from_numpy(a.copy())
    return out


def write_bundle(d, tensors):
    os.makedirs(d, exist_ok=True)
    man = {}
    for i, (name, t) in enumerate(tensors.items()):
        t = t.detach().contiguous().cpu()
        dt = {torch.float32: 'float32', torch.int64: 'int64'}[t.dtype]
        fn = f'{i}.bin'
        t.numpy().tofile(os.path.join(d, fn))
        man[name] = {'dtype': dt, 'shape': list(t.shape), 'file': fn}
    with open(os.path.join(d, 'manifest.json'), 'w') as f:
        json.dump(man, f)


# ---------------------------------------------------------------- RECIPE.md's numbers

# The architecture's constants, from RECIPE.md (the paper and the authors' code), never read from
# the model under test: a request names only its variant (depth, arch and Table 4's ablations).
FPN_DIM = 256                      # FPN output channels (C2..C5 -> 256)
FPN_STRIDES = (4, 8, 16, 32)       # P2..P5
ROI_RES, C4_ROI_RES = 7, 14        # RoIAlign output: FPN / C4 (on C4, stride 16)
C4_STRIDE, C5_STRIDE = 16, 32    # RoIAlign on C4 (R50-C4) / on C5 (the no-FPN ablation)
HEAD_CONVS, HEAD_FC = 4, 1024      # FastRCNNConvFCHead: 4 conv (3x3, 256, BN, ReLU) + 1 fc
MLP_HIDDEN, EMBED_DIM = 4096, 256  # projector g and predictor q: Linear -> BN1d -> ReLU -> Linear
LEVEL_THRESHOLDS = (48, 96, 192)   # s = sqrt(wh): P2 if s <= 48, P3 if <= 96, P4 if <= 192, else P5
PAPER_VARIANT = dict(arch='fpn', fpn=True, head=True, scaleAware=True, singleLevel=0, poolAllLevels=False)


def variant(v):
    """The request's variant over the paper's (depth is required)."""
    unknown = set(v) - set(PAPER_VARIANT) - {'depth'}
    assert not unknown, f'unknown variant keys {sorted(unknown)}'
    return {**PAPER_VARIANT, **v}


# ---------------------------------------------------------------- network (Detectron2 names)

class ConvNorm(nn.Conv2d):
    """Detectron2 layers.Conv2d: conv with child `norm`; bias only without a norm."""

    def __init__(self, cin, cout, k, stride=1, padding=0, norm=True, relu=False):
        super().__init__(cin, cout, k, stride=stride, padding=padding, bias=not norm)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.relu = relu

    def forward(self, x):
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


class BasicStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvNorm(3, 64, 7, stride=2, padding=3, relu=True)

    def forward(self, x):
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride) if cin != cout else None
        self.conv1 = ConvNorm(cin, cout, 3, stride=stride, padding=1, relu=True)
        self.conv2 = ConvNorm(cout, cout, 3, padding=1)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu(out)


class BottleneckBlock(nn.Module):
    # STRIDE_IN_1X1 = False: the stride sits in the 3x3 conv.
    def __init__(self, cin, cout, mid, stride):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride) if cin != cout else None
        self.conv1 = ConvNorm(cin, mid, 1, relu=True)
        self.conv2 = ConvNorm(mid, mid, 3, stride=stride, padding=1, relu=True)
        self.conv3 = ConvNorm(mid, cout, 1)

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu(out)


BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def make_stage(depth, i):
    basic = depth < 50
    base = 64 if basic else 256
    cout = base << i
    cin = 64 if i == 0 else base << (i - 1)
    blocks = []
    for b in range(BLOCKS[depth][i]):
        s = (1 if i == 0 else 2) if b == 0 else 1
        c = cin if b == 0 else cout
        blocks.append(BasicBlock(c, cout, s) if basic else BottleneckBlock(c, cout, 64 << i, s))
    return nn.Sequential(*blocks)


def stage_channels(depth, i):
    return (64 if depth < 50 else 256) << i


class ResNet(nn.Module):
    def __init__(self, depth, last=5):
        super().__init__()
        self.stem = BasicStem()
        self.names = [f'res{i + 2}' for i in range(last - 1)]
        for i, n in enumerate(self.names):
            self.add_module(n, make_stage(depth, i))

    def forward(self, x):
        out = {}
        x = self.stem(x)
        for n in self.names:
            x = getattr(self, n)(x)
            out[n] = x
        return out


class FPN(nn.Module):
    def __init__(self, depth):
        super().__init__()
        for i in range(4):
            self.add_module(f'fpn_lateral{i + 2}', ConvNorm(stage_channels(depth, i), FPN_DIM, 1))
            self.add_module(f'fpn_output{i + 2}', ConvNorm(FPN_DIM, FPN_DIM, 3, padding=1))
        self.bottom_up = ResNet(depth)

    def forward(self, x):
        c = self.bottom_up(x)
        feats = [c[f'res{i + 2}'] for i in range(4)]
        prev = self.fpn_lateral5(feats[3])
        outs = [self.fpn_output5(prev)]
        for i in (2, 1, 0):
            lat = getattr(self, f'fpn_lateral{i + 2}')(feats[i])
            prev = lat + F.interpolate(prev, size=lat.shape[-2:], mode='nearest')
            outs.insert(0, getattr(self, f'fpn_output{i + 2}')(prev))
        return outs


class FastRCNNConvFCHead(nn.Module):
    def __init__(self, cin, res):
        super().__init__()
        for i in range(HEAD_CONVS):
            self.add_module(f'conv{i + 1}', ConvNorm(cin if i == 0 else FPN_DIM, FPN_DIM, 3, padding=1, relu=True))
        self.fc1 = nn.Linear(FPN_DIM * res * res, HEAD_FC)

    def forward(self, x):
        for i in range(HEAD_CONVS):
            x = getattr(self, f'conv{i + 1}')(x)
        return F.relu(self.fc1(torch.flatten(x, 1)))


def pool_levels(feats, strides, boxes, levels, res):
    """Detectron2 ROIPooler: every level's boxes pooled and index_put into place."""
    if len(feats) == 1:
        return roi_align(feats[0], boxes, res, 1.0 / strides[0], -1, True)
    out = feats[0].new_zeros((boxes.shape[0], feats[0].shape[1], res, res))
    for l, (f, s) in enumerate(zip(feats, strides)):
        inds = torch.nonzero(levels == l).squeeze(1)
        # Empty levels too, as Detectron2: the level stays in the graph (zero gradient).
        out = out.index_put((inds,), roi_align(f, boxes[inds], res, 1.0 / s, -1, True))
    return out


class BoxROIHeads(nn.Module):
    def __init__(self, cin, strides, head, res=ROI_RES):
        super().__init__()
        self.strides, self.res = strides, res
        self.box_head = FastRCNNConvFCHead(cin, res) if head else None
        self.out_dim = HEAD_FC if head else cin

    def head(self, pooled):
        return self.box_head(pooled) if self.box_head is not None else pooled.mean(dim=(2, 3))

    def forward(self, feats, boxes, levels):
        return self.head(pool_levels(feats, self.strides, boxes, levels, self.res))

    def every_level(self, feats, boxes):
        return [self.head(roi_align(f, boxes, self.res, 1.0 / s, -1, True)) for f, s in zip(feats, self.strides)]


class Res5ROIHeads(nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.res5 = make_stage(depth, 3)
        self.out_dim = stage_channels(depth, 3)

    def forward(self, feats, boxes, levels):
        x = self.res5(roi_align(feats[0], boxes, C4_ROI_RES, 1.0 / C4_STRIDE, -1, True))
        return F.avg_pool2d(x, x.shape[-1]).flatten(1)


class MLP(nn.Module):
    def __init__(self, cin, hidden=MLP_HIDDEN, cout=EMBED_DIM):
        super().__init__()
        self.linear1 = nn.Linear(cin, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.linear2 = nn.Linear(hidden, cout)

    def forward(self, x):
        return self.linear2(F.relu(self.bn1(self.linear1(x))))


class Network(nn.Module):
    """backbone + roi_heads + projector (f^I, RoIAlign, f^H, g); o: a variant()."""

    def __init__(self, o):
        super().__init__()
        self.o = o
        d = o['depth']
        if o['arch'] == 'c4':
            self.backbone = ResNet(d, last=4)
            self.roi_heads = Res5ROIHeads(d) if o['head'] else BoxROIHeads(stage_channels(d, 2), [C4_STRIDE], False, C4_ROI_RES)
        elif o['fpn']:
            self.backbone = FPN(d)
            self.roi_heads = BoxROIHeads(FPN_DIM, list(FPN_STRIDES), o['head'])
        else:
            self.backbone = ResNet(d)
            self.roi_heads = BoxROIHeads(stage_channels(d, 3), [C5_STRIDE], o['head'])
        self.projector = MLP(self.roi_heads.out_dim)
        self.multi = o['arch'] == 'fpn' and o['fpn']

    def features(self, x):
        if isinstance(self.backbone, FPN):
            return self.backbone(x)
        c = self.backbone(x)
        return [c['res4'] if self.o['arch'] == 'c4' else c['res5']]

    def levels(self, boxes):
        if not self.o['scaleAware']:
            return torch.full((boxes.shape[0],), self.o['singleLevel'], dtype=torch.int64)
        t = LEVEL_THRESHOLDS
        s = torch.sqrt((boxes[:, 3] - boxes[:, 1]).clamp(min=0) * (boxes[:, 4] - boxes[:, 2]).clamp(min=0))
        return (s > t[0]).long() + (s > t[1]).long() + (s > t[2]).long()

    def embed(self, feats, boxes, then=None):
        post = (lambda h: then(self.projector(h))) if then else self.projector
        lv = self.levels(boxes) if self.multi else None
        if not self.o['poolAllLevels']:
            return post(self.roi_heads(feats, boxes, lv))
        z = torch.stack([post(h) for h in self.roi_heads.every_level(feats, boxes)])  # L, R, D
        return z[lv, torch.arange(boxes.shape[0])]


class SoCo(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.online = Network(o)
        self.predictor = MLP(EMBED_DIM)
        self.target = Network(o)
        for p in self.target.parameters():
            p.requires_grad_(False)

    def run(self, net, views, k, then=None):
        cache, out = {}, []
        for img, boxes in views:
            if id(img) not in cache:
                cache[id(img)] = net.features(img)
            e = net.embed(cache[id(img)], boxes, then)
            out.append(e.reshape(img.shape[0], k, -1))
        return out

    def forward(self, views, k):
        online = self.run(self.online, views, k, self.predictor)
        with torch.no_grad():
            target = self.run(self.target, views, k)
        return online, target

    @torch.no_grad()
    def update_target(self, tau):
        # The authors' _momentum_update_key_encoder: parameters only.
        for q, k in zip(self.online.parameters(), self.target.parameters()):
            k.data = k.data * tau + q.data * (1.0 - tau)


def soco_loss(online, target, pairs):
    """Sum over view pairs (a, b) of term(a->b) + term(b->a); term = -2 mean cos (RECIPE, BYOL)."""
    total = 0
    for a, b in pairs:
        total = total + -2 * F.cosine_similarity(online[a], target[b], dim=2).mean()
        total = total + -2 * F.cosine_similarity(online[b], target[a], dim=2).mean()
    return total


# ---------------------------------------------------------------- modes

def run(in_dir, out_dir):
    """IN_DIR: request.json {options, views: [[image, boxes]...] (names), pairs, tau, export?,
    targetFromOnline} and a bundle of the images, boxes and the model state. Writes to OUT_DIR
    the embeddings, loss, gradients, BN buffers after the step and the target after updateTarget."""
    with open(os.path.join(in_dir, 'request.json')) as f:
        req = json.load(f)
    torch.set_num_threads(req.get('threads', 1))
    b = read_bundle(in_dir)
    model = SoCo(variant(req['variant']))
    model.train()
    state = {k[len('state.'):]: v for k, v in b.items() if k.startswith('state.')}
    if req.get('export'):
        # The detector part of the online network comes from our Detectron2 export, as a user's
        # Detectron2 would read it.
        ckpt = torch.load(req['export'], map_location='cpu', weights_only=True)
        assert ckpt['__author__'] == 'soco-train' and ckpt['matching_heuristics'] is True
        for k, v in ckpt['model'].items():
            state['online.' + k] = v
    if req.get('targetFromOnline'):
        state.update({'target.' + k[len('online.'):]: v for k, v in state.items() if k.startswith('online.')})
    model.load_state_dict(state, strict=True)
    images = {}
    views = []
    for img, boxes in req['views']:
        if img not in images:
            images[img] = b[img]
        views.append((images[img], b[boxes]))
    k = views[0][1].shape[0] // views[0][0].shape[0]
    out = {}
    if req.get('backward', True):
        online, target = model(views, k)
        loss = soco_loss(online, target, req['pairs'])
        loss.backward()
        out['loss'] = loss.detach().reshape(1)
        for prefix, net in (('online.', model.online), ('predictor.', model.predictor)):
            for n, p in net.named_parameters():
                out['grad.' + prefix + n] = p.grad if p.grad is not None else torch.zeros_like(p)
    else:
        with torch.no_grad():
            online, target = model(views, k)
    for i, (o, t) in enumerate(zip(online, target)):
        out[f'online.{i}'] = o
        out[f'target.{i}'] = t
    for n, v in model.state_dict().items():
        if 'running_' in n or 'num_batches_tracked' in n:
            out['buffer.' + n] = v
    if 'tau' in req:
        model.update_target(req['tau'])
        for n, p in model.target.named_parameters():
            out['ema.target.' + n] = p
    write_bundle(out_dir, out)


def train(in_dir, out_dir):
    """Whole SoCo training iterations, as the paper and RECIPE.md describe them: both networks
    forward on the views, the loss, backward, LARS (train_ref.py, the authors' lars.py over
    torch.optim.SGD) on the online network and predictor, then the target EMA on parameters with
    tau = 1 - (1 - tau0) * (cos(pi * k / K) + 1) / 2, k = i + 1 after iteration i (the authors'
    update before iteration i + 1's target forward). IN_DIR: request.json {variant, views, pairs,
    lrs (one per iteration), tau0, totalSteps, lars: {weightDecay, momentum, trustCoefficient}} and a
    bundle of the images, boxes and the whole initial state. Writes each iteration's loss (loss.i),
    the state after the last (state.*) and the momentum buffers (momentum.*)."""
    from train_ref import lars_optimizer, lars_step
    with open(os.path.join(in_dir, 'request.json')) as f:
        req = json.load(f)
    torch.set_num_threads(1)
    b = read_bundle(in_dir)
    model = SoCo(variant(req['variant'])).train()
    model.load_state_dict({k[len('state.'):]: v for k, v in b.items() if k.startswith('state.')}, strict=True)
    views = [(b[img], b[boxes]) for img, boxes in req['views']]
    k = views[0][1].shape[0] // views[0][0].shape[0]
    named = [('online.' + n, p) for n, p in model.online.named_parameters()]
    named += [('predictor.' + n, p) for n, p in model.predictor.named_parameters()]
    opt = lars_optimizer(named, req['lrs'][0], req['lars']['weightDecay'], req['lars']['momentum'])
    out = {}
    for i, lr in enumerate(req['lrs']):
        opt.zero_grad(set_to_none=True)
        online, target = model(views, k)
        loss = soco_loss(online, target, req['pairs'])
        loss.backward()
        lars_step(opt, lr, req['lars']['trustCoefficient'])
        K, tau0 = req['totalSteps'], req['tau0']
        model.update_target(1 - (1 - tau0) * (math.cos(math.pi * min(i + 1, K) / K) + 1) / 2)
        out[f'loss.{i}'] = loss.detach().reshape(1)
    for n, v in model.state_dict().items():
        out['state.' + n] = v
    for n, p in named:
        if 'momentum_buffer' in opt.state.get(p, {}):  # none for a parameter that never had a gradient
            out['momentum.' + n] = opt.state[p]['momentum_buffer']
    write_bundle(out_dir, out)


def bench(in_dir, threads):
    """Serves timed SoCo steps (online fwd+bwd on every view, target fwd, loss) on the images and
    boxes of IN_DIR (request.json: options, views, pairs, device, autocast), random init: each line
    'step' on stdin runs one step and answers 'WALL CPU PEAK' (seconds; CPU: this process, all
    threads; PEAK: bytes of CUDA memory allocated at most, 0 on the CPU), so the caller can
    interleave its own steps with these and both see the same machine load."""
    with open(os.path.join(in_dir, 'request.json')) as f:
        req = json.load(f)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch.device(req.get('device', 'cpu'))
    amp = {'bfloat16': torch.bfloat16, 'float16': torch.float16}.get(req.get('autocast'))
    b = read_bundle(in_dir)
    model = SoCo(variant(req['variant'])).to(device).train()
    if req.get('channelsLast'):
        model = model.to(memory_format=torch.channels_last)
    views = [(b[img].to(device), b[boxes].to(device)) for img, boxes in req['views']]
    k = views[0][1].shape[0] // views[0][0].shape[0]

    def step():
        for p in model.parameters():
            p.grad = None
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            online, target = model(views, k)
            loss = soco_loss([o.float() for o in online], [t.float() for t in target], req['pairs'])
        loss.backward()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    print(f'ready {torch.get_num_threads()}', flush=True)
    for line in sys.stdin:
        if line.strip() != 'step':
            break
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        peak = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else 0
        print(time.perf_counter() - t0, time.process_time() - c0, peak, flush=True)


def nn_layers(in_dir, out_dir):
    """torch.nn layers on the inputs of IN_DIR: Conv2d, Linear, BatchNorm2d/1d (two training steps
    then eval, momentum 0.1 and None), with gradients of sum(y * g); state-dict key order."""
    torch.set_num_threads(1)
    b = read_bundle(in_dir)
    out = {}

    def grads(y, g, leaves, prefix):
        (y * g).sum().backward()
        for n, t in leaves.items():
            out[f'{prefix}.grad.{n}'] = t.grad

    x = b['conv.x'].requires_grad_()
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(b['conv.weight'])
        conv.bias.copy_(b['conv.bias'])
    y = conv(x)
    out['conv.y'] = y
    grads(y, b['conv.g'], {'x': x, 'weight': conv.weight, 'bias': conv.bias}, 'conv')

    x = b['linear.x'].requires_grad_()
    lin = nn.Linear(7, 3)
    with torch.no_grad():
        lin.weight.copy_(b['linear.weight'])
        lin.bias.copy_(b['linear.bias'])
    y = lin(x)
    out['linear.y'] = y
    grads(y, b['linear.g'], {'x': x, 'weight': lin.weight, 'bias': lin.bias}, 'linear')

    for name, make in (('bn2d', lambda: nn.BatchNorm2d(3)), ('bn1d', lambda: nn.BatchNorm1d(4)),
                       ('bn1d3', lambda: nn.BatchNorm1d(4)), ('bncum', lambda: nn.BatchNorm2d(3, momentum=None))):
        bn = make()
        with torch.no_grad():
            bn.weight.copy_(b[f'{name}.weight'])
            bn.bias.copy_(b[f'{name}.bias'])
        bn.train()
        x1 = b[f'{name}.x1'].requires_grad_()
        y1 = bn(x1)
        out[f'{name}.y1'] = y1
        grads(y1, b[f'{name}.g'], {'x': x1, 'weight': bn.weight, 'bias': bn.bias}, name)
        bn(b[f'{name}.x2'])
        bn.eval()
        out[f'{name}.y3'] = bn(b[f'{name}.x3'])
        for k, v in bn.state_dict().items():
            out[f'{name}.state.{k}'] = v
    write_bundle(out_dir, out)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    with open(os.path.join(out_dir, 'keys.json'), 'w') as f:
        json.dump({'state': list(seq.state_dict().keys()), 'params': [n for n, _ in seq.named_parameters()]}, f)


def check_export(tsv, *files):
    """Loads each export (.pth with torch.load(weights_only=True), .pkl with Detectron2's
    pickle.load(encoding='latin1')), checks its keys and shapes against the TSV exactly, and
    prints JSON {file: {key: [dtype, shape, sha256 of the little-endian values]}} for the caller to
    compare every value with its own."""
    import hashlib
    import pickle
    with open(tsv) as f:
        expected = {k: json.loads(s) for k, s in (line.rstrip('\n').split('\t') for line in f if line.strip())}
    report = {}
    for fn in files:
        if fn.endswith('.pkl'):
            with open(fn, 'rb') as f:
                ckpt = pickle.load(f, encoding='latin1')
            model = {k: torch.as_tensor(v) for k, v in ckpt['model'].items()}
            assert all(isinstance(v, np.ndarray) for v in ckpt['model'].values()), 'pkl values must be numpy arrays'
        else:
            ckpt = torch.load(fn, map_location='cpu', weights_only=True)
            model = ckpt['model']
        assert set(ckpt) == {'model', '__author__', 'matching_heuristics'}, sorted(ckpt)
        assert ckpt['__author__'] == 'soco-train' and ckpt['matching_heuristics'] is True
        missing = sorted(set(expected) - set(model))
        extra = sorted(set(model) - set(expected))
        shapes = sorted(k for k in expected if k in model and list(model[k].shape) != expected[k])
        assert not (missing or extra or shapes), f'{fn}: missing {missing[:5]} extra {extra[:5]} shape {shapes[:5]}'
        for k, v in model.items():
            want = torch.int64 if k.endswith('num_batches_tracked') else torch.float32
            assert v.dtype == want, f'{fn}: {k} is {v.dtype}'
        # numpy's native byte order is little-endian on every platform LibTorch ships for
        report[fn] = {k: [str(v.dtype), list(v.shape), hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()]
                      for k, v in model.items()}
    print(json.dumps(report))


if __name__ == '__main__':
    if sys.argv[1] == 'run':
        # Several cases per process: the torch import is paid once.
        for i in range(2, len(sys.argv), 2):
            run(sys.argv[i], sys.argv[i + 1])
    elif sys.argv[1] == 'train':
        train(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == 'nn':
        nn_layers(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == 'check-export':
        check_export(*sys.argv[2:])
    elif sys.argv[1] == 'bench':
        bench(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f'unknown mode {sys.argv[1]}')
