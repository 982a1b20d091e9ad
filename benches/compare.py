#!/usr/bin/env python3
"""A model's training step and inference latency in kiln and its peers, interleaved in one run
on this machine (the figures drift with the clock, so each round measures every framework).

    python3 benches/compare.py [--model mlp|cnn|lstm|gru|encoder|mha128|mha512] [--rounds N] [--threads 1 2]

`lstm` and `gru`: 32 steps of 32 features → LSTM or GRU (128 units, Keras's GRU with
`reset_after`, as PyTorch's) → dense 10, training step only, at batch 64 (kiln: `cargo bench
--bench rnn_step -- --json --model lstm|gru`).

Models: `mlp` (784 → 64 relu → 64 relu → 10) and `cnn` (28×28×1 → conv 32 3×3 relu → max pool 2
→ conv 64 3×3 relu → max pool 2 → flatten → dense 128 relu → dense 10) at batch 128; `encoder`
(two post-norm Transformer encoder blocks, d 128, 4 heads, FFN 512 relu, ε 1e-5, on 64 steps,
then average pooling and dense 10) at batch 32; `mha128` and `mha512` (multi-head
self-attention, 4 heads × 32, on 128 or 512 steps of width 128, pooling, dense 10) at batch 32
and 8; the inference rows are at the model's batch and 1. Peers: PyTorch eager and
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

# Each model's batch, item shape, and kiln's benchmark (with its arguments).
MODELS = {
    "mlp": (128, (784,), ["--bench", "mlp_step"]),
    "cnn": (128, (28, 28, 1), ["--bench", "cnn_step"]),
    "encoder": (32, (64, 128), ["--bench", "encoder_step", "--", "--model", "encoder"]),
    "mha128": (32, (128, 128), ["--bench", "encoder_step", "--", "--model", "mha128"]),
    "mha512": (8, (512, 128), ["--bench", "encoder_step", "--", "--model", "mha512"]),
    "lstm": (64, (32, 32), ["--bench", "rnn_step", "--", "--model", "lstm"]),
    "gru": (64, (32, 32), ["--bench", "rnn_step", "--", "--model", "gru"]),
}
TRANSFORMERS = ("encoder", "mha128", "mha512")
# The recurrent models (training step only): features and units.
RECURRENT = ("lstm", "gru")
FEATURES, UNITS = 32, 128


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
    batch, item, _ = MODELS[model]
    if model in RECURRENT:
        cell = {"lstm": nn.LSTM, "gru": nn.GRU}[model](FEATURES, UNITS, batch_first=True)
        head = nn.Linear(UNITS, 10)

        class Last(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell, self.head = cell, head

            def forward(self, x):
                return self.head(self.cell(x)[0][:, -1])

        net = Last()
    elif model == "mlp":
        net = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                            nn.Linear(64, 10))
    elif model == "cnn":
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
        item = (1, 28, 28)
    else:
        net = TorchTransformer(model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, *item)
    y = torch.randint(0, 10, (batch,))
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


def torch_transformer_class():
    """The encoder or attention network in PyTorch (batch first, dropout 0)."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            if model == "encoder":
                self.body = nn.Sequential(*[
                    nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True,
                                               layer_norm_eps=1e-5) for _ in range(2)])
            else:
                self.body = nn.MultiheadAttention(128, 4, batch_first=True)
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            if self.model == "encoder":
                x = self.body(x)
            else:
                x, _ = self.body(x, x, x, need_weights=False)
            return self.head(x.mean(1))

    return Net


def TorchTransformer(model):  # noqa: N802 (a class made on first use: torch is optional)
    return torch_transformer_class()(model)


def jax_glorot(jax, key, shape):
    """A Glorot-uniform array (fans as Keras computes them)."""
    field = 1
    for d in shape[:-2]:
        field *= d
    limit = (6.0 / (field * (shape[-2] + shape[-1]))) ** 0.5
    return jax.random.uniform(key, shape, minval=-limit, maxval=limit)


def jax_transformer(jax, model):
    """The encoder or attention network in JAX: its parameters and its logits."""
    import jax.numpy as jnp

    keys = iter(jax.random.split(jax.random.PRNGKey(0), 64))
    dense = lambda i, o: (jax_glorot(jax, next(keys), (i, o)), jnp.zeros(o))  # noqa: E731
    norm = lambda: (jnp.ones(128), jnp.zeros(128))  # noqa: E731
    attention = lambda: {n: dense(128, 128) for n in "qkvo"}  # noqa: E731
    if model == "encoder":
        blocks = [{"attention": attention(), "ln1": norm(), "ffn1": dense(128, 512),
                   "ffn2": dense(512, 128), "ln2": norm()} for _ in range(2)]
    else:
        blocks = [{"attention": attention()}]
    params = {"head": dense(128, 10), "blocks": blocks}

    def affine(p, x):
        return x @ p[0] + p[1]

    def layer_norm(p, x):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p[0] + p[1]

    def mha(p, x):
        b, t, d = x.shape
        q, k, v = (affine(p[n], x).reshape(b, t, 4, d // 4) for n in "qkv")
        scores = jnp.einsum("bthk,bshk->bhts", q, k) / jnp.sqrt(d / 4.0)
        out = jnp.einsum("bhts,bshk->bthk", jax.nn.softmax(scores), v)
        return affine(p["o"], out.reshape(b, t, d))

    def logits(ps, x):
        for block in ps["blocks"]:
            if model != "encoder":
                x = mha(block["attention"], x)
                continue
            x = layer_norm(block["ln1"], x + mha(block["attention"], x))
            hidden = jax.nn.relu(affine(block["ffn1"], x))
            x = layer_norm(block["ln2"], x + affine(block["ffn2"], hidden))
        return affine(ps["head"], x.mean(1))

    return params, logits


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

    if model in TRANSFORMERS:
        params, logits = jax_transformer(jax, model)
    else:
        params, logits = jax_params(jax, model), jax_logits(jax, model)

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
    batch, item, _ = MODELS[model]
    key = jax.random.PRNGKey(1)
    x = jax.random.uniform(key, (batch, *item))
    y = jax.random.randint(key, (batch,), 0, 10)
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
    batch, item, _ = MODELS[model]
    if model in RECURRENT:
        body = [{"lstm": layers.LSTM, "gru": layers.GRU}[model](UNITS)]
    elif model == "mlp":
        body = [layers.Dense(64, activation="relu"), layers.Dense(64, activation="relu")]
    elif model == "cnn":
        body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
                layers.Flatten(), layers.Dense(128, activation="relu")]
    elif model == "encoder":
        import keras_hub
        body = [keras_hub.layers.TransformerEncoder(512, 4) for _ in range(2)]
        body.append(layers.GlobalAveragePooling1D())
    if model in TRANSFORMERS and model != "encoder":
        inputs = keras.Input(item)
        attended = layers.MultiHeadAttention(4, 32)(inputs, inputs)
        pooled = layers.GlobalAveragePooling1D()(attended)
        net = keras.Model(inputs, layers.Dense(10, activation="softmax")(pooled))
    else:
        net = keras.Sequential([keras.Input(item), *body,
                                layers.Dense(10, activation="softmax")])
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch, *item), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    x1 = rng.random((1, *item), dtype=np.float32)
    return figures(lambda: net.train_on_batch(x, y), lambda: net.predict_on_batch(x),
                   lambda: net.predict_on_batch(x1))


def pinned(threads):
    """`taskset` prefix running a command on CPUs 0 .. threads-1 (nothing if taskset is missing)."""
    if shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", f"0-{threads - 1}"]


def bench_args(model):
    """kiln's benchmark of `model`, ready for its own arguments."""
    args = MODELS[model][2]
    return args if "--" in args else [*args, "--"]


def kiln_figures(model, threads):
    env = dict(os.environ, KILN_THREADS=str(threads))
    out = subprocess.run(
        pinned(threads) + ["cargo", "bench", "--quiet", *bench_args(model),
                           "--json", "--threads", str(threads)],
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
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp")
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
    batch = MODELS[args.model][0]
    print(f"{args.model}; medians in ms; ratio = peer / kiln (> 1: kiln is "
          "faster); each run pinned to the first `threads` CPUs")
    print("peers: " + (", ".join(peers) or "none installed"))
    rows = [("train_step_ms", f"train step, batch {batch}"),
            ("infer_128_ms", f"inference, batch {batch}"),
            ("infer_1_ms", "inference, batch 1")][:1 if args.model in RECURRENT else 3]
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
