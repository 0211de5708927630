#!/usr/bin/python3
"""PyTorch side of bench/torch.ts, kept alive for the whole run so rounds can alternate with ours.

Reads commands on stdin, one per line, answers one number (seconds) per line:
  setup DEVICE THREADS      torch.set_num_threads(THREADS); tensors for both benchmarks on DEVICE
  op N CLOCK                mean seconds per `a.add(b)` on 4-element float32 tensors over N calls,
                            by CLOCK: 'cpu' (process CPU time) or 'wall'
  conv REPS                 median seconds per conv2d forward+backward (8x256x56x56, 3x3, 256->256)
"""
import statistics
import sys
import time

import torch

dev = 'cpu'


def sync():
    if dev.startswith('cuda'):
        torch.cuda.synchronize()


def main():
    global dev
    a = b = x = w = None
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == 'setup':
            dev = cmd[1]
            torch.set_num_threads(int(cmd[2]))
            a = torch.ones(4, device=dev)
            b = torch.ones(4, device=dev)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(8, 256, 56, 56, generator=g).to(dev).requires_grad_()
            w = (torch.randn(256, 256, 3, 3, generator=g) * 0.02).to(dev).requires_grad_()
            out = torch.get_num_threads()
        elif cmd[0] == 'op':
            n = int(cmd[1])
            clock = time.process_time if cmd[2] == 'cpu' else time.perf_counter
            for _ in range(1000):
                a.add(b)
            sync()
            t0 = clock()
            for _ in range(n):
                a.add(b)
            sync()
            out = (clock() - t0) / n
        elif cmd[0] == 'conv':
            times = []
            for _ in range(int(cmd[1])):
                t0 = time.perf_counter()
                y = torch.nn.functional.conv2d(x, w, None, 1, 1)
                y.backward(torch.ones_like(y))
                x.grad = None
                w.grad = None
                del y
                sync()
                times.append(time.perf_counter() - t0)
            out = statistics.median(times)
        else:
            raise SystemExit(f'unknown command {cmd[0]}')
        print(out, flush=True)


if __name__ == '__main__':
    main()
