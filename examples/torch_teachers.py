#!/usr/bin/python3
"""torch_teachers: PyTorch teachers for libkdens, written as ONNX files.

Trains N small CNNs in PyTorch, each on a random half of Fashion-MNIST's
training set (the dissertation's cheap ensemble), and writes each as
OUT/tN.onnx with torch.onnx.export, ready for `kdens import`,
`kdens distill --teacher` or examples/onnx_teachers.c.

The one thing libkdens needs of an exported teacher: it takes the image as
raw pixels 0..255 in NCHW order, as libkdens feeds every model.  The
`RawPixels` wrapper below puts the usual normalisation (ToTensor's 1/255,
then Normalize's mean and std) in front of the network as one multiply and
one add by per-channel constants; libkdens reads that pair as the model's
input scaling.  (A teacher exported without it can still be imported with
`kdens import --input-scale S --input-offset O --out T.kdm`.)

    /usr/bin/python3 examples/torch_teachers.py --out teachers --teachers 3 --epochs 2

Debian's python3-torch (make deps ONNX=1); data from dataset-fashion-mnist.
"""
import argparse
import gzip
import os
import struct

import numpy as np
import torch
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    """An IDX file (gzip'ed or not) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(part):
    stem = "train" if part == "train" else "t10k"
    images = idx(os.path.join(DATA, stem + "-images-idx3-ubyte.gz"))
    labels = idx(os.path.join(DATA, stem + "-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # N x 1 x 28 x 28, 0..255
    return x, torch.from_numpy(labels.astype(np.int64))


class RawPixels(nn.Module):
    """net(x * scale + shift): raw pixels in, the network's normalised input inside."""

    def __init__(self, net, mean, std):
        super().__init__()
        channels = len(mean)
        scale = [1.0 / (255.0 * s) for s in std]
        shift = [-m / s for m, s in zip(mean, std)]
        self.register_buffer("scale", torch.tensor(scale).reshape(1, channels, 1, 1))
        self.register_buffer("shift", torch.tensor(shift).reshape(1, channels, 1, 1))
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x * self.scale + self.shift), dim=1)


def small_cnn(classes):
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, classes))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="teachers")
    ap.add_argument("--teachers", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    x, y = load("train")
    xt, yt = load("test")
    mean, std = [0.2860], [0.3530]  # Fashion-MNIST's pixel statistics over 0..1
    os.makedirs(a.out, exist_ok=True)
    for t in range(a.teachers):
        pick = torch.randperm(len(x))[: int(a.fraction * len(x))]
        model = RawPixels(small_cnn(10), mean, std)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(a.epochs):
            model.train()
            for b in pick[torch.randperm(len(pick))].split(128):
                opt.zero_grad()
                loss = nn.functional.nll_loss(torch.log(model(x[b]) + 1e-12), y[b])
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        path = os.path.join(a.out, "t%d.onnx" % t)
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=13,
                          input_names=["input"], output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}})
        print("%s: test accuracy %.4f (trained on %d images)" % (path, acc, len(pick)))


if __name__ == "__main__":
    main()
