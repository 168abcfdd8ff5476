#!/usr/bin/env python3
"""The scaling model of data-parallel training over MPI (docs/mpi.md), on paper.

For each built-in architecture: the bytes one rank sends per training step,
the time of the gradient allreduce at 10, 25 and 100 Gbit/s, and the
efficiency of N nodes like this machine (2 cores) against one, for a global
batch of 128 (strong scaling) and for 128 images per node (weak scaling).  It rests on figures measured here: the trainable weights and
batch-norm layers of each architecture at 32x32x3 (`kdens arch`), and one
node's training rate (docs/benchmarks.md; ResNet-20 from `make bench MPI=1`).

The model follows what libkdens does (lib/mpi/comm_mpi.c, lib/train/):
  - the gradient allreduce of P floats: each rank exchanges chunks with every
    other (MPI_Alltoallv, then MPI_Allgatherv): 2 (N-1)/N * 4P bytes out and
    in per rank, 2 (N-1) messages of latency alpha;
  - short collectives (batch-norm statistics, the agreement before each
    pass): gather to rank 0 and broadcast, 2 log2 N latencies each; per step
    5 per batch-norm layer-latency units (forward: broadcast of the shift and
    the sums; backward: the sums) and 3 agreements;
  - no overlap of communication with computation (the allreduce follows the
    backward pass), so step time = compute / N + communication.
Run: python3 scripts/scaling_model.py  (prints the markdown tables)
"""
import math

# (name, trainable floats at 32x32x3 with 10 classes, batch-norm layers,
#  one node's training images/s (2 cores), where that figure comes from)
ARCHS = [
    ("test", 41418, 0, 24294, "benchmarks.md, 28x28x1"),
    ("resnet20", 272474, 21, 980, "make bench MPI=1, 28x28x1, 1 rank x 2 threads"),
    ("resnet50v2", 23539850, 49, 154, "benchmarks.md big, 32x32x3, median"),
    ("densenet121", 6964106, 121, 277, "benchmarks.md big, 32x32x3, median"),
    ("efficientnetb0", 4020358, 49, 585, "benchmarks.md big, 32x32x3, median"),
    ("mobilenetv3large", 4214842, 46, 752, "benchmarks.md big, 32x32x3, median"),
]
LINKS = [("10 Gbit/s", 10e9, 20e-6), ("25 Gbit/s", 25e9, 15e-6), ("100 Gbit/s", 100e9, 5e-6)]
NODES = [2, 4, 8, 16, 32, 64]
BATCH = 128
EFFECTIVE = 0.9  # share of the line rate a large message gets


def comm_time(params, bn_layers, nodes, rate, alpha):
    beta = rate * EFFECTIVE / 8  # bytes/s
    grad = 2 * (nodes - 1) * alpha + 2 * (nodes - 1) / nodes * 4 * params / beta
    steps = math.log2(nodes)
    short = (5 * bn_layers + 3 * 2) * steps * alpha
    return grad, short


def main():
    print("| architecture | trainable weights | bytes sent per step and rank (N large) "
          "| one node: img/s, s/step | basis |")
    print("|---|---|---|---|---|")
    for name, p, bn, r1, src in ARCHS:
        print(f"| {name} | {p:,} | {8 * p / 1e6:.2f} MB | {r1:,}, {BATCH / r1:.3f} | {src} |")
    print()
    print("Gradient allreduce at 64 nodes (ms) and efficiency of N nodes against one "
          "(global batch 128):")
    print()
    head = " | ".join(f"N={n}" for n in NODES)
    print(f"| architecture | link | allreduce, 64 nodes | {head} |")
    print("|---|---|---|" + "---|" * len(NODES))
    for name, p, bn, r1, _ in ARCHS:
        t1 = BATCH / r1
        for link, rate, alpha in LINKS:
            g64, _ = comm_time(p, bn, 64, rate, alpha)
            effs = []
            for n in NODES:
                g, s = comm_time(p, bn, n, rate, alpha)
                effs.append(t1 / (t1 + n * (g + s)))
            cells = " | ".join(f"{100 * e:.0f}%" for e in effs)
            print(f"| {name} | {link} | {1e3 * g64:.2f} | {cells} |")
    print()
    print("Weak scaling, 128 images per node and step (the global batch grows with N): "
          "efficiency")
    print()
    print(f"| architecture | link | {head} |")
    print("|---|---|" + "---|" * len(NODES))
    for name, p, bn, r1, _ in ARCHS:
        t1 = BATCH / r1
        for link, rate, alpha in LINKS:
            effs = [t1 / (t1 + sum(comm_time(p, bn, n, rate, alpha))) for n in NODES]
            cells = " | ".join(f"{100 * e:.0f}%" for e in effs)
            print(f"| {name} | {link} | {cells} |")


if __name__ == "__main__":
    main()
