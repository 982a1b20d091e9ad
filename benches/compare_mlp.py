#!/usr/bin/env python3
"""The seed MLP's training step and inference latency in kiln and in PyTorch, interleaved in one
run on this machine (the figures drift with the clock, so each round measures both).

    python3 benches/compare_mlp.py [--rounds N] [--threads N]

Needs `pip install torch`. kiln's figures come from `cargo bench --bench mlp_step -- --json`.
"""
import argparse
import json
import statistics
import subprocess
import time

import torch


def torch_figures(threads, seconds=3.0):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(128, 784)
    y = torch.randint(0, 10, (128,))
    x1 = torch.rand(1, 784)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def timed(f):
        for _ in range(20):
            f()
        samples, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            f()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples) * 1e3

    train = timed(step)
    with torch.no_grad():
        infer_128 = timed(lambda: torch.softmax(model(x), -1))
        infer_1 = timed(lambda: torch.softmax(model(x1), -1))
    return {"train_step_ms": train, "infer_128_ms": infer_128, "infer_1_ms": infer_1}


def kiln_figures():
    out = subprocess.run(
        ["cargo", "bench", "--quiet", "--bench", "mlp_step", "--", "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (kiln runs 1)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {args.threads} thread(s); medians in ms")
    print(f"{'round':>5} {'row':<22} {'kiln':>10} {'torch':>10} {'torch/kiln':>11}")
    for r in range(1, args.rounds + 1):
        k = kiln_figures()
        t = torch_figures(args.threads)
        for key, label in [("train_step_ms", "train step, batch 128"),
                           ("infer_128_ms", "inference, batch 128"),
                           ("infer_1_ms", "inference, batch 1")]:
            print(f"{r:>5} {label:<22} {k[key]:>10.4f} {t[key]:>10.4f} {t[key] / k[key]:>10.2f}x")
        print(f"{r:>5} {'kiln train compile':<22} {k['train_compile_ms']:>10.2f}")


if __name__ == "__main__":
    main()
