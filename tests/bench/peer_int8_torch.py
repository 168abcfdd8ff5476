#!/usr/bin/python3
"""Peer baseline for int8 inference: PyTorch (Debian python3-torch 1.13, CPU)
float32 against static int8 (torch.ao.quantization, FX graph mode, the first
backend Debian's build has of fbgemm, onednn and qnnpack -- onednn there:
int8 weights, u8 activations, calibrated on 1,000
Fashion-MNIST training images) for the architectures of `make bench`'s int8
section.  Prints images/s at batch 1000 and the batch-1 latency of each.
Run beside `make bench BENCH_ARGS="2 int8"` in the same session; compare ratios.

    /usr/bin/python3 tests/bench/peer_int8_torch.py [THREADS]
"""
import os
import sys
import time

import numpy as np
import torch
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch import D, idx, resnet20, seed_test  # noqa: E402  (the same models)


def timed(model, xb, x1):
    with torch.no_grad():
        model(xb)
        t = time.perf_counter()
        for _ in range(3):
            model(xb)
        batch = 3 * len(xb) / (time.perf_counter() - t)
        model(x1)
        t = time.perf_counter()
        for _ in range(200):
            model(x1)
        latency = (time.perf_counter() - t) / 200
    return batch, latency


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    engines = torch.backends.quantized.supported_engines
    engine = next(e for e in ("fbgemm", "onednn", "qnnpack") if e in engines)
    torch.backends.quantized.engine = engine
    torch.manual_seed(0)
    x = idx(D + "train-images-idx3-ubyte.gz")
    xb = torch.from_numpy(x[:1000].astype(np.float32) / 255.0)
    calib = torch.from_numpy(x[1000:2000].astype(np.float32) / 255.0)
    x1 = xb[:1]
    print("torch", torch.__version__, "threads", torch.get_num_threads(), "engine",
          torch.backends.quantized.engine)
    for name, model in (("seed-test-cnn", seed_test()), ("resnet20", resnet20())):
        model.eval()
        fb, fl = timed(model, xb, x1)
        prepared = prepare_fx(model, get_default_qconfig_mapping(engine), (xb[:1],))
        with torch.no_grad():
            for i in range(0, len(calib), 100):
                prepared(calib[i:i + 100])
        q = convert_fx(prepared)
        qb, ql = timed(q, xb, x1)
        print(f"{name}: float32 {fb:.0f} img/s, batch-1 {fl * 1e6:.0f} us; "
              f"int8 {qb:.0f} img/s, batch-1 {ql * 1e6:.0f} us; "
              f"int8/float {qb / fb:.2f}x at batch 1000")


if __name__ == "__main__":
    main()
