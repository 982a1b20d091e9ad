#!/usr/bin/env python3
"""Keras 3 reference values for tests/metrics.rs and tests/sample_weight.rs.

Not run by CI. Each case feeds fixed predictions through an identity model, so that
`model.evaluate` (batches of 4 over 10 items: 4, 4 and a partial 2) reports Keras's streaming
metrics over the whole epoch and its loss, unweighted and with `sample_weight`. The inputs are
printed as Rust constants with the expected values, to be pinned in the tests.

    /work/venv-keras/bin/python tools/reference/metrics.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

BATCH = 4
N = 10
CLASSES = 7

WEIGHTS = np.array([1.0, 2.0, 0.5, 0.0, 3.0, 1.5, 1.0, 0.25, 2.0, 1.0], dtype="float32")

# Binary task: probabilities (none on an AUC threshold i/199) and 0/1 labels. A positive
# (0.501) and a negative (0.4995) share the AUC bucket (99/199, 100/199]: Keras's AUC counts
# them as tied where the exact ROC area ranks them, and they straddle precision's 0.5.
BINARY_P = np.array(
    [0.9, 0.2, 0.65, 0.501, 0.05, 0.8, 0.55, 0.4995, 0.71, 0.12], dtype="float32"
).reshape(N, 1)
BINARY_Y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype="float32").reshape(N, 1)


def class_scores():
    """Softmax-like rows without ties: distinct values, normalised."""
    rng = np.random.default_rng(18)
    raw = rng.permutation(N * CLASSES).reshape(N, CLASSES).astype("float32") + 1.0
    return (raw / raw.sum(axis=1, keepdims=True)).astype("float32")


SCORES = class_scores()
LABELS = np.array([3, 0, 6, 2, 2, 5, 1, 4, 0, 6], dtype="int32")
ONE_HOT = np.eye(CLASSES, dtype="float32")[LABELS]

# Regression task: predictions and targets [N, 3].
REG_RNG = np.random.default_rng(7)
REG_P = np.round(REG_RNG.normal(size=(N, 3)), 3).astype("float32")
REG_Y = np.round(REG_RNG.normal(size=(N, 3)), 3).astype("float32")

CASES = {
    "binary": (
        BINARY_P,
        BINARY_Y,
        keras.losses.BinaryCrossentropy(),
        lambda: [
            keras.metrics.BinaryAccuracy(),
            keras.metrics.Precision(),
            keras.metrics.Recall(),
            keras.metrics.AUC(),
            keras.metrics.MeanAbsoluteError(),
            keras.metrics.MeanSquaredError(),
        ],
    ),
    "sparse": (
        SCORES,
        LABELS,
        keras.losses.SparseCategoricalCrossentropy(),
        lambda: [
            keras.metrics.SparseCategoricalAccuracy(),
            keras.metrics.SparseTopKCategoricalAccuracy(),
            keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
        ],
    ),
    "categorical": (
        SCORES,
        ONE_HOT,
        keras.losses.CategoricalCrossentropy(),
        lambda: [
            keras.metrics.CategoricalAccuracy(),
            keras.metrics.TopKCategoricalAccuracy(k=3),
        ],
    ),
    "regression": (
        REG_P,
        REG_Y,
        keras.losses.MeanSquaredError(),
        lambda: [keras.metrics.MeanAbsoluteError(), keras.metrics.MeanSquaredError()],
    ),
}


def evaluate(p, y, loss, metrics, sample_weight=None):
    keras.utils.clear_session()  # metric names without `_1` suffixes
    model = keras.Sequential([keras.Input(p.shape[1:]), keras.layers.Identity()])
    model.compile(loss=loss, metrics=metrics())
    return model.evaluate(
        p, y, batch_size=BATCH, sample_weight=sample_weight, verbose=0, return_dict=True
    )


def rust_array(name, values, ty):
    flat = np.asarray(values).reshape(-1)
    # The shortest decimal that reads back as the same f32.
    body = ", ".join(str(np.float32(v)) if ty == "f32" else str(int(v)) for v in flat)
    return f"const {name}: [{ty}; {flat.size}] = [{body}];"


def exact_roc_auc(p, y):
    """The exact ROC area (sklearn's value): the fraction of ranked positive-negative pairs."""
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float(pairs.mean())


def main():
    print(f"// keras {keras.__version__}")
    print(rust_array("WEIGHTS", WEIGHTS, "f32"))
    print(rust_array("BINARY_P", BINARY_P, "f32"))
    print(rust_array("BINARY_Y", BINARY_Y, "f32"))
    print(rust_array("SCORES", SCORES, "f32"))
    print(rust_array("LABELS", LABELS, "i32"))
    print(rust_array("REG_P", REG_P, "f32"))
    print(rust_array("REG_Y", REG_Y, "f32"))
    print(f"// exact ROC AUC of the binary case (not Keras's): {exact_roc_auc(BINARY_P, BINARY_Y)!r}")
    for name, (p, y, loss, metrics) in CASES.items():
        plain = evaluate(p, y, loss, metrics)
        weighted = evaluate(p, y, loss, metrics, WEIGHTS)
        print(f"// {name}")
        for key, value in plain.items():
            print(f'    ("{key}", {float(value)!r}),')
        print(f'    ("weighted loss", {float(weighted["loss"])!r}),')
        # Metrics are unweighted in Keras (`metrics=`, not `weighted_metrics=`).
        for key, value in weighted.items():
            if key != "loss":
                assert value == plain[key], (name, key)


if __name__ == "__main__":
    main()
