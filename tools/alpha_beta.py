#!/usr/bin/env python3
"""An alpha-beta (latency-bandwidth) model of ring all-reduce, predicting the scaling efficiency
of kiln's data-parallel training step on N nodes.

A ring all-reduce of M bytes over N nodes is a reduce-scatter then an all-gather: 2(N-1) steps,
each sending M/N bytes to the next node, so

    T(N) = 2 (N - 1) alpha + 2 (N - 1) / N * M / beta

(alpha: per-message latency; beta: link bandwidth; the reduction's arithmetic is neglected).
Each node computes its own per-node batch (weak scaling), and kiln all-reduces the gradient
after the backward pass, without overlap, so a step takes t_compute + T(N) and the scaling
efficiency is t_compute / (t_compute + T(N)).

    python3 tools/alpha_beta.py --step-ms 75.1 --params 225034

prints the table for the seed CNN with its measured per-step compute time (1 thread, batch
128; see examples/distributed_step.rs and the README).
"""

import argparse


def ring_allreduce_seconds(nodes, nbytes, alpha, bits_per_second):
    beta = bits_per_second / 8.0
    return 2 * (nodes - 1) * alpha + 2 * (nodes - 1) / nodes * nbytes / beta


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--step-ms", type=float, required=True,
                   help="measured compute time of one training step on one node (ms)")
    p.add_argument("--params", type=int, required=True,
                   help="trainable parameters (the gradient is 4 bytes each)")
    p.add_argument("--alpha-us", type=float, default=25.0,
                   help="per-message latency in microseconds (default 25: MPI over TCP)")
    p.add_argument("--gbits", type=float, nargs="+", default=[10.0, 25.0, 100.0],
                   help="link bandwidths in Gbit/s")
    args = p.parse_args()
    nbytes = 4 * args.params
    compute = args.step_ms / 1e3
    alpha = args.alpha_us / 1e6
    print(f"gradient {nbytes / 1e6:.2f} MB, compute {args.step_ms:.1f} ms/step, "
          f"alpha {args.alpha_us:.0f} us")
    header = f"{'N':>3} " + " ".join(
        f"{f'{g:g} Gbit/s: T ms':>17} {'eff':>6}" for g in args.gbits)
    print(header)
    print("-" * len(header))
    for nodes in [2, 4, 8, 16, 32, 64]:
        cells = []
        for g in args.gbits:
            t = ring_allreduce_seconds(nodes, nbytes, alpha, g * 1e9)
            efficiency = compute / (compute + t)
            cells.append(f"{t * 1e3:>17.2f} {efficiency:>6.1%}")
        print(f"{nodes:>3} " + " ".join(cells))


if __name__ == "__main__":
    main()
