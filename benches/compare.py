#!/usr/bin/env python3
"""The seed MLP's training step and inference latency in kiln and its peers, interleaved in one
run on this machine (the figures drift with the clock, so each round measures every framework).

    python3 benches/compare_mlp.py [--rounds N] [--threads 1 2]

Peers: PyTorch eager and `torch.compile` (`pip install torch`), and JAX with `jax.jit`
(`pip install jax`); a peer that is not installed is skipped. kiln's figures come from
`cargo bench --bench mlp_step -- --json --threads N`. Every measurement runs in its own
process pinned to the first N CPUs (`taskset`), for N = 1 and 2 by default. Every framework
trains the same network (784 → 64 relu → 64 relu → 10, Adam with Keras's defaults, sparse
categorical cross-entropy) on random data at batch 128 and predicts softmax probabilities at
batch 128 and 1; medians in ms.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SIZES = [(784, 64), (64, 64), (64, 10)]
BATCH = 128


def timed(f, seconds=3.0):
    """Median wall time of `f()` in ms over `seconds`, after 20 warm-up calls."""
    for _ in range(20):
        f()
    samples, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def torch_figures(threads, compiled):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(BATCH, 784)
    y = torch.randint(0, 10, (BATCH,))
    x1 = torch.rand(1, 784)
    forward = torch.compile(model) if compiled else model

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()

    def predict(inputs):
        with torch.no_grad():
            return torch.softmax(forward(inputs), -1)

    started = time.perf_counter()
    step()
    predict(x)
    predict(x1)
    first_ms = (time.perf_counter() - started) * 1e3
    return {
        "train_step_ms": timed(step),
        "infer_128_ms": timed(lambda: predict(x)),
        "infer_1_ms": timed(lambda: predict(x1)),
        "first_call_ms": first_ms,
    }


def jax_figures():
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    params = []
    for fan_in, fan_out in SIZES:
        key, sub = jax.random.split(key)
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        params.append((jax.random.uniform(sub, (fan_in, fan_out), minval=-limit, maxval=limit),
                       jnp.zeros(fan_out)))

    def logits(ps, x):
        for i, (w, b) in enumerate(ps):
            x = x @ w + b
            if i < len(ps) - 1:
                x = jax.nn.relu(x)
        return x

    def loss(ps, x, y):
        log_p = jax.nn.log_softmax(logits(ps, x))
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

    @jax.jit
    def step(ps, m, v, t, x, y):
        grads = jax.grad(loss)(ps, x, y)
        t = t + 1
        alpha = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - b1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - b2), v, grads)
        ps = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + eps), ps, m, v)
        return ps, m, v, t

    predict = jax.jit(lambda ps, x: jax.nn.softmax(logits(ps, x)))
    x = jax.random.uniform(key, (BATCH, 784))
    y = jax.random.randint(key, (BATCH,), 0, 10)
    x1 = jax.random.uniform(key, (1, 784))
    state = [params, jax.tree_util.tree_map(jnp.zeros_like, params),
             jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0)]

    def train():
        state[:] = step(*state, x, y)
        jax.block_until_ready(state[0])

    started = time.perf_counter()
    train()
    predict(state[0], x).block_until_ready()
    predict(state[0], x1).block_until_ready()
    first_ms = (time.perf_counter() - started) * 1e3
    return {
        "train_step_ms": timed(train),
        "infer_128_ms": timed(lambda: predict(state[0], x).block_until_ready()),
        "infer_1_ms": timed(lambda: predict(state[0], x1).block_until_ready()),
        "first_call_ms": first_ms,
    }


def pinned(threads):
    """`taskset` prefix running a command on CPUs 0 .. threads-1 (nothing if taskset is missing)."""
    if shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", f"0-{threads - 1}"]


def kiln_figures(threads):
    env = dict(os.environ, KILN_THREADS=str(threads))
    out = subprocess.run(
        pinned(threads) + ["cargo", "bench", "--quiet", "--bench", "mlp_step", "--",
                           "--json", "--threads", str(threads)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


PEERS = {
    "torch eager": lambda threads: torch_figures(threads, False),
    "torch.compile": lambda threads: torch_figures(threads, True),
    "jax.jit": lambda threads: jax_figures(),
}


def peer_figures(name, threads):
    """Runs one peer in a child process pinned to `threads` CPUs (XLA fixes its thread pools
    when it starts, so each thread count needs a fresh process)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if threads == 1:
        env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                    "intra_op_parallelism_threads=1")
    out = subprocess.run(
        pinned(threads) + [sys.executable, __file__, "--peer", name, "--threads", str(threads)],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def available(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+",
                        default=[t for t in (1, 2) if t <= (os.cpu_count() or 1)],
                        help="thread counts to compare (each run pinned to that many CPUs)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        print(json.dumps(PEERS[args.peer](args.threads[0])))
        return
    peers = []
    if available("torch"):
        peers += ["torch eager", "torch.compile"]
    if available("jax"):
        peers.append("jax.jit")
    print("medians in ms; ratio = peer / kiln (> 1: kiln is faster); each run pinned to the "
          "first `threads` CPUs")
    print("peers: " + (", ".join(peers) or "none installed"))
    rows = [("train_step_ms", "train step, batch 128"),
            ("infer_128_ms", "inference, batch 128"),
            ("infer_1_ms", "inference, batch 1")]
    header = f"{'round':>5} {'threads':>7} {'row':<22} {'kiln':>9}"
    for name in peers:
        header += f" {name:>14} {'ratio':>6}"
    print(header)
    for r in range(1, args.rounds + 1):
        for threads in args.threads:
            k = kiln_figures(threads)
            results = [peer_figures(name, threads) for name in peers]
            for key, label in rows:
                line = f"{r:>5} {threads:>7} {label:<22} {k[key]:>9.4f}"
                for p in results:
                    line += f" {p[key]:>14.4f} {p[key] / k[key]:>5.2f}x"
                print(line)
            line = f"{r:>5} {threads:>7} {'compile / first call':<22} {k['train_compile_ms']:>9.2f}"
            for p in results:
                line += f" {p['first_call_ms']:>14.2f} {'':>6}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
