#!/usr/bin/env python3
"""Prints Keras 3's per-token loss under an `Embedding(mask_zero=True)` mask, pinned in
tests/embedding.rs (`a_masked_per_token_loss_is_keras_s`). Run in the venv of generate.py."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

table = (np.arange(18, dtype=np.float32).reshape(6, 3) - 8.0) / 10.0
kernel = (np.arange(12, dtype=np.float32).reshape(3, 4) % 5 - 2.0) / 4.0
bias = np.array([0.1, -0.2, 0.0, 0.3], dtype=np.float32)
ids = np.array([[1, 2, 0], [3, 0, 0]], dtype=np.int32)
labels = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.int32)

model = keras.Sequential([
    keras.Input((3,), dtype="int32"),
    keras.layers.Embedding(6, 3, mask_zero=True),
    keras.layers.Dense(4, activation="softmax"),
])
model.set_weights([table, kernel, bias])
model.compile(loss="sparse_categorical_crossentropy")
print(f"masked loss {model.evaluate(ids, labels, verbose=0):.7f}")
