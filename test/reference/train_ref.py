#!/usr/bin/python3
"""Reference values for test/loss, test/lars and test/schedules, computed with Debian's PyTorch.

Reads one JSON object on stdin ({"loss": [...], "lars": [...], "schedules": [...]}) and writes the
results as JSON on stdout. Each algorithm is written the way the SoCo paper or the authors' code
(hologerry/SoCo, contrast/) computes it, on PyTorch's own ops and optimizers, so the TypeScript
implementation is checked against an independent computation, not against itself.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F


def t(x, shape):
    return torch.tensor(x, dtype=torch.float32).reshape(shape)


# ---- loss ----

def paper_term(online, target, valid):
    # Eq. 5-6: L = 1/K sum_i -2 cos(v_i, v'_i), averaged over the images of the batch.
    cos = F.cosine_similarity(online, target.detach(), dim=2, eps=1e-8)  # N, K
    if valid is None:
        return -2 * cos.mean(dim=1).mean()
    per_image = (cos * valid).sum(1) / valid.sum(1).clamp(min=1)
    has = (valid.sum(1) > 0).float()
    return -2 * (per_image * has).sum() / has.sum().clamp(min=1)


def authors_term(online, target, valid):
    # hologerry/SoCo regression_loss_bboxs_aware with the correspondence matrix of matching boxes
    # (box i of one view corresponds to box i of the other when valid).
    N, K, _ = online.shape
    q = F.normalize(online, dim=2)
    k = F.normalize(target.detach(), dim=2)
    corr = torch.diag_embed(valid if valid is not None else torch.ones(N, K))
    sim = torch.bmm(q, k.transpose(1, 2))
    loss = (sim * corr).sum(-1).sum(-1) / (corr.sum(-1).sum(-1) + 1e-6)
    return -2 * loss.mean()


def loss_case(c):
    term = authors_term if c['normalization'] == 'authors' else paper_term
    shape = c['shape']
    leaves = []
    total = 0
    pair_values = []
    for p in c['pairs']:
        oa, ta, ob, tb = (t(p[k], shape) for k in ('onlineA', 'targetA', 'onlineB', 'targetB'))
        oa.requires_grad_(True)
        ob.requires_grad_(True)
        leaves += [oa, ob]
        valid = t(p['valid'], shape[:2]) if p.get('valid') is not None else None
        v = term(oa, tb, valid) + term(ob, ta, valid)
        pair_values.append(v.item())
        total = total + v
    total.backward()
    return {'loss': total.item(), 'pairs': pair_values, 'grads': [l.grad.flatten().tolist() for l in leaves]}


# ---- LARS (contrast/lars.py over torch.optim.SGD) ----

def lars_optimizer(named, lr, weight_decay, momentum):
    """torch.optim.SGD over the authors' add_weight_decay groups: 1-dim tensors (biases, BN) get
    no decay and are ignored by LARS."""
    decay = [p for _, p in named if p.dim() != 1]
    no_decay = [p for _, p in named if p.dim() == 1]
    return torch.optim.SGD([{'params': no_decay, 'weight_decay': 0, 'ignore': True},
                            {'params': decay, 'weight_decay': weight_decay, 'ignore': False}],
                           lr=lr, momentum=momentum)


def lars_step(opt, lr, coef, eps=1e-8):
    """contrast/lars.py's step: weight decay and the trust ratio folded into p.grad, then SGD's
    momentum step at lr with its own weight decay off."""
    with torch.no_grad():
        for group in opt.param_groups:
            wd = group['weight_decay']
            for p in group['params']:
                if p.grad is None:
                    continue
                if wd > 0:
                    p.grad = p.grad.add(p, alpha=wd)
                if not group['ignore']:
                    pn, gn = p.norm(), p.grad.norm()
                    ratio = 1.0
                    if pn > 0 and gn > 0:
                        ratio = coef * pn / (gn + eps)
                    p.grad = p.grad.mul(ratio)
    saved = [g['weight_decay'] for g in opt.param_groups]
    for g in opt.param_groups:
        g['weight_decay'] = 0
        g['lr'] = lr
    opt.step()
    for g, w in zip(opt.param_groups, saved):
        g['weight_decay'] = w


def lars_case(c):
    names = [p['name'] for p in c['params']]
    params = {p['name']: torch.nn.Parameter(t(p['data'], p['shape'])) for p in c['params']}
    opt = lars_optimizer([(n, params[n]) for n in names], c['lrs'][0], c['weightDecay'], c['momentum'])
    for step, lr in enumerate(c['lrs']):
        for n in names:
            g = c['grads'][step].get(n)
            params[n].grad = None if g is None else t(g, params[n].shape)
        lars_step(opt, lr, c['trustCoefficient'])
    bufs = {}
    for n in names:
        st = opt.state.get(params[n], {})
        if 'momentum_buffer' in st:
            bufs[n] = st['momentum_buffer'].flatten().tolist()
    return {'params': {n: params[n].detach().flatten().tolist() for n in names}, 'momentum': bufs}


# ---- schedules ----

def lr_case(c):
    """The authors' GradualWarmupScheduler(multiplier m) around CosineAnnealingLR(eta_min), stepped
    once per iteration after optimizer.step(); iteration i trains with the lr read before its step.
    warmupStartFactor 0 (paper) is the same formula with 1/m = 0."""
    model = torch.nn.Linear(1, 1)
    base = c['peakLr']
    W, T, f, eta = c['warmupIters'], c['totalIters'], c['warmupStartFactor'], c['minLr']
    opt = torch.optim.SGD(model.parameters(), lr=base)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T - W, eta_min=eta)
    lrs = []
    for i in range(T):
        if W > 0 and i <= W:
            lr = base * (f + (1 - f) * i / W)
        else:
            # CosineAnnealingLR stepped with an explicit epoch uses its closed form (as the authors' scheduler does).
            cosine.last_epoch = i - W
            lr = cosine._get_closed_form_lr()[0]
        lrs.append(lr)
    return lrs


def tau_case(c):
    # contrast/models/SoCo_FPN.py _momentum_update_key_encoder
    import numpy as np
    K, tau0 = c['totalSteps'], c['tau0']
    return [float(1. - (1. - tau0) * (np.cos(np.pi * k / K) + 1) / 2.) for k in range(K + 1)]


def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(1)
    out = {
        'loss': [loss_case(c) for c in req.get('loss', [])],
        'lars': [lars_case(c) for c in req.get('lars', [])],
        'lr': [lr_case(c) for c in req.get('lr', [])],
        'tau': [tau_case(c) for c in req.get('tau', [])],
        'torch': torch.__version__,
    }
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
