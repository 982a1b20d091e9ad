#!/usr/bin/env python3
"""The seed MLP's or the seed CNN's training step and inference latency, or a recurrent
training step, in kiln and its peers, interleaved in one run on this machine (the figures drift
with the clock, so each round measures every framework).

    python3 benches/compare.py [--model mlp|cnn|lstm|gru] [--rounds N] [--threads 1 2]

`lstm` and `gru`: 32 steps of 32 features → LSTM or GRU (128 units, Keras's GRU with
`reset_after`, as PyTorch's) → dense 10, training step only, at batch 64 (kiln: `cargo bench
--bench rnn_step -- --json --model lstm|gru`).

Models: `mlp` (784 → 64 relu → 64 relu → 10) and `cnn` (28×28×1 → conv 32 3×3 relu → max pool 2
→ conv 64 3×3 relu → max pool 2 → flatten → dense 128 relu → dense 10). Peers: PyTorch eager and
`torch.compile` (`pip install torch`), JAX with `jax.jit` (`pip install jax`) and Keras 3 on
TensorFlow (`pip install tensorflow keras`); a peer that is not installed is skipped. kiln's
figures come from `cargo bench --bench mlp_step|cnn_step -- --json --threads N`. Every
measurement runs in its own process pinned to the first N CPUs (`taskset`), for N = 1 and 2 by
default. Every framework trains the same network (Adam with Keras's defaults, sparse categorical
cross-entropy) on random data at batch 128 and predicts softmax probabilities at batch 128 and
1, each in its own layout (PyTorch NCHW, the others NHWC); medians in ms.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

BATCH = 128
# kiln's benchmark of each model.
BENCH = {"mlp": "mlp_step", "cnn": "cnn_step", "lstm": "rnn_step", "gru": "rnn_step"}
# The recurrent models: sequence length, features, units and batch.
RECURRENT = {"lstm", "gru"}
STEPS, FEATURES, UNITS, RNN_BATCH = 32, 32, 128, 64


def batch_of(model):
    return RNN_BATCH if model in RECURRENT else BATCH


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


def figures(step, predict_128, predict_1):
    """The first calls' time, then the medians of the training step and both predictions."""
    started = time.perf_counter()
    step()
    predict_128()
    predict_1()
    first_ms = (time.perf_counter() - started) * 1e3
    return {
        "train_step_ms": timed(step),
        "infer_128_ms": timed(predict_128),
        "infer_1_ms": timed(predict_1),
        "first_call_ms": first_ms,
    }


def torch_figures(model, threads, compiled):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model in RECURRENT:
        cell = {"lstm": nn.LSTM, "gru": nn.GRU}[model](FEATURES, UNITS, batch_first=True)
        head = nn.Linear(UNITS, 10)

        class Last(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell, self.head = cell, head

            def forward(self, x):
                return self.head(self.cell(x)[0][:, -1])

        net, item = Last(), (STEPS, FEATURES)
    elif model == "mlp":
        net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                            nn.Linear(64, 10))
        item = (784,)
    else:
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
        item = (1, 28, 28)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch_of(model), *item)
    y = torch.randint(0, 10, (batch_of(model),))
    x1 = torch.rand(1, *item)
    forward = torch.compile(net) if compiled else net

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()

    def predict(inputs):
        with torch.no_grad():
            return torch.softmax(forward(inputs), -1)

    return figures(step, lambda: predict(x), lambda: predict(x1))


def jax_params(jax, model):
    """Glorot-uniform kernels and zero biases: `(kernel, bias)` per layer."""
    import jax.numpy as jnp

    gates = {"lstm": 4, "gru": 3}.get(model, 0)
    shapes = {"mlp": [(784, 64), (64, 64), (64, 10)],
              "cnn": [(3, 3, 1, 32), (3, 3, 32, 64), (1600, 128), (128, 10)]}.get(
        model, [(FEATURES, gates * UNITS), (UNITS, gates * UNITS), (UNITS, 10)])
    key, params = jax.random.PRNGKey(0), []
    for shape in shapes:
        key, sub = jax.random.split(key)
        field = 1
        for d in shape[:-2]:
            field *= d
        limit = (6.0 / (field * (shape[-2] + shape[-1]))) ** 0.5
        params.append((jax.random.uniform(sub, shape, minval=-limit, maxval=limit),
                       jnp.zeros(shape[-1])))
    return params


def jax_logits(jax, model):
    """The model's logits as a function of the parameters and an NHWC (or flat) batch."""
    import jax.numpy as jnp

    def conv_pool(x, kernel, bias):
        x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.relu(x + bias)
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                     "VALID")

    def recurrent(ps, x):
        (w, b), (u, bu), (wd, bd) = ps
        xs = jnp.swapaxes(x @ w + b, 0, 1)
        h = jnp.zeros((x.shape[0], UNITS))

        def lstm(carry, xt):
            h, c = carry
            i, f, g, o = jnp.split(xt + h @ u, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        def gru(h, xt):
            xz, xr, xh = jnp.split(xt, 3, axis=-1)
            rz, rr, rh = jnp.split(h @ u + bu, 3, axis=-1)
            z, r = jax.nn.sigmoid(xz + rz), jax.nn.sigmoid(xr + rr)
            hh = jnp.tanh(xh + r * rh)
            return z * h + (1 - z) * hh, None

        if model == "lstm":
            (h, _), _ = jax.lax.scan(lstm, (h, h), xs)
        else:
            h, _ = jax.lax.scan(gru, h, xs)
        return h @ wd + bd

    def logits(ps, x):
        if model in RECURRENT:
            return recurrent(ps, x)
        if model == "cnn":
            for kernel, bias in ps[:2]:
                x = conv_pool(x, kernel, bias)
            x = x.reshape(x.shape[0], -1)
            ps = ps[2:]
        for i, (w, b) in enumerate(ps):
            x = x @ w + b
            if i < len(ps) - 1:
                x = jax.nn.relu(x)
        return x

    return logits


def jax_figures(model):
    import jax
    import jax.numpy as jnp

    logits = jax_logits(jax, model)

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

    params = jax_params(jax, model)
    predict = jax.jit(lambda ps, x: jax.nn.softmax(logits(ps, x)))
    item = {"mlp": (784,), "cnn": (28, 28, 1)}.get(model, (STEPS, FEATURES))
    key = jax.random.PRNGKey(1)
    x = jax.random.uniform(key, (batch_of(model), *item))
    y = jax.random.randint(key, (batch_of(model),), 0, 10)
    x1 = jax.random.uniform(key, (1, *item))
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    state = [params, zeros(), zeros(), jnp.float32(0)]

    def train():
        state[:] = step(*state, x, y)
        jax.block_until_ready(state[0])

    return figures(train, lambda: predict(state[0], x).block_until_ready(),
                   lambda: predict(state[0], x1).block_until_ready())


def keras_figures(model, threads):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    if model in RECURRENT:
        item = (STEPS, FEATURES)
        body = [{"lstm": layers.LSTM, "gru": layers.GRU}[model](UNITS)]
    elif model == "mlp":
        item = (784,)
        body = [layers.Dense(64, activation="relu"), layers.Dense(64, activation="relu")]
    else:
        item = (28, 28, 1)
        body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
                layers.Flatten(), layers.Dense(128, activation="relu")]
    net = keras.Sequential([keras.Input(item), *body, layers.Dense(10, activation="softmax")])
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch_of(model), *item), dtype=np.float32)
    y = rng.integers(0, 10, batch_of(model)).astype(np.int32)
    x1 = rng.random((1, *item), dtype=np.float32)
    return figures(lambda: net.train_on_batch(x, y), lambda: net.predict_on_batch(x),
                   lambda: net.predict_on_batch(x1))


def pinned(threads):
    """`taskset` prefix running a command on CPUs 0 .. threads-1 (nothing if taskset is missing)."""
    if shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", f"0-{threads - 1}"]


def kiln_figures(model, threads):
    env = dict(os.environ, KILN_THREADS=str(threads))
    out = subprocess.run(
        pinned(threads) + ["cargo", "bench", "--quiet", "--bench", BENCH[model], "--",
                           "--json", "--threads", str(threads)]
        + (["--model", model] if model in RECURRENT else []),
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


PEERS = {
    "torch eager": lambda model, threads: torch_figures(model, threads, False),
    "torch.compile": lambda model, threads: torch_figures(model, threads, True),
    "jax.jit": lambda model, threads: jax_figures(model),
    "keras/tf": keras_figures,
}

# The module each peer needs.
NEEDS = {"torch eager": "torch", "torch.compile": "torch", "jax.jit": "jax",
         "keras/tf": "tensorflow"}


def peer_figures(name, model, threads):
    """Runs one peer in a child process pinned to `threads` CPUs (XLA fixes its thread pools
    when it starts, so each thread count needs a fresh process)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if threads == 1:
        env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                    "intra_op_parallelism_threads=1")
    out = subprocess.run(
        pinned(threads) + [sys.executable, __file__, "--peer", name, "--model", model,
                           "--threads", str(threads)],
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
    parser.add_argument("--model", choices=sorted(BENCH), default="mlp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+",
                        default=[t for t in (1, 2) if t <= (os.cpu_count() or 1)],
                        help="thread counts to compare (each run pinned to that many CPUs)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        print(json.dumps(PEERS[args.peer](args.model, args.threads[0])))
        return
    peers = [name for name in PEERS if available(NEEDS[name])]
    print(f"{args.model.upper()}; medians in ms; ratio = peer / kiln (> 1: kiln is "
          "faster); each run pinned to the first `threads` CPUs")
    print("peers: " + (", ".join(peers) or "none installed"))
    rows = [("train_step_ms", f"train step, batch {batch_of(args.model)}")]
    if args.model not in RECURRENT:
        rows += [("infer_128_ms", "inference, batch 128"), ("infer_1_ms", "inference, batch 1")]
    header = f"{'round':>5} {'threads':>7} {'row':<22} {'kiln':>9}"
    for name in peers:
        header += f" {name:>14} {'ratio':>6}"
    print(header)
    for r in range(1, args.rounds + 1):
        for threads in args.threads:
            k = kiln_figures(args.model, threads)
            results = [peer_figures(name, args.model, threads) for name in peers]
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
