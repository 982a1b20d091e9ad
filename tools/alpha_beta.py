#!/usr/bin/env python3
"""An alpha-beta (latency-bandwidth) model of ring all-reduce, predicting the scaling efficiency
of kiln's data-parallel training step on N nodes.

A ring all-reduce of M bytes over N nodes is a reduce-scatter then an all-gather: 2(N-1) steps,
each sending M/N bytes to the next node, so

    T(N) = 2 (N - 1) alpha + 2 (N - 1) / N * M / beta

(alpha: per-message latency; beta: link bandwidth; the reduction's arithmetic is neglected).
Each node computes its own per-node batch (weak scaling). Without overlap a step takes
t_compute + T(N), and the scaling efficiency is t_compute / (t_compute + T(N)).

kiln overlaps the all-reduce with the backward pass: the buckets that close early reduce while
the rest of the backward pass runs (--hidden-ms of compute), and the last bucket's parameters
(--tail-params) are reduced after it. The exposed communication is then
max(0, T_early - hidden) + T_tail, where T_early and T_tail are T(N) of those bytes.

    python3 tools/alpha_beta.py --step-ms 150 --params 225034
    python3 tools/alpha_beta.py --step-ms 150 --params 225034 --hidden-ms 90 --tail-params 18816

print the tables for the seed CNN (any model: its trainable parameter count and measured step
time) without and with overlap, from its measured per-step compute time (1 thread, batch 128;
see examples/distributed_step.rs and the README).
"""

import argparse


def ring_allreduce_seconds(nodes, nbytes, alpha, bits_per_second):
    beta = bits_per_second / 8.0
    return 2 * (nodes - 1) * alpha + 2 * (nodes - 1) / nodes * nbytes / beta


def exposed_seconds(nodes, args, bits):
    """The communication a step waits for on `nodes` nodes linked at `bits` per second."""
    alpha = args.alpha_us / 1e6
    early = 4 * (args.params - args.tail_params)
    tail = 4 * args.tail_params
    t_early = ring_allreduce_seconds(nodes, early, alpha, bits) if early else 0.0
    t_tail = ring_allreduce_seconds(nodes, tail, alpha, bits) if tail else 0.0
    return max(0.0, t_early - args.hidden_ms / 1e3) + t_tail


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
    p.add_argument("--hidden-ms", type=float, default=0.0,
                   help="backward-pass compute that runs while the early buckets reduce "
                        "(default 0: no overlap)")
    p.add_argument("--tail-params", type=int, default=0,
                   help="parameters in the buckets reduced after the backward pass "
                        "(with --hidden-ms)")
    args = p.parse_args()
    if not 0 <= args.tail_params <= args.params:
        p.error("--tail-params must be between 0 and --params")
    nbytes = 4 * args.params
    compute = args.step_ms / 1e3
    overlap = (f", {args.hidden_ms:.1f} ms of it overlapping all but "
               f"{4 * args.tail_params / 1e6:.2f} MB" if args.hidden_ms else ", no overlap")
    print(f"gradient {nbytes / 1e6:.2f} MB, compute {args.step_ms:.1f} ms/step{overlap}, "
          f"alpha {args.alpha_us:.0f} us")
    header = f"{'N':>3} " + " ".join(
        f"{f'{g:g} Gbit/s: T ms':>17} {'eff':>6}" for g in args.gbits)
    print(header)
    print("-" * len(header))
    for nodes in [2, 4, 8, 16, 32, 64]:
        cells = []
        for g in args.gbits:
            t = exposed_seconds(nodes, args, g * 1e9)
            efficiency = compute / (compute + t)
            cells.append(f"{t * 1e3:>17.2f} {efficiency:>6.1%}")
        print(f"{nodes:>3} " + " ".join(cells))


if __name__ == "__main__":
    main()
