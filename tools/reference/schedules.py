#!/usr/bin/env python3
"""Prints the learning rates Keras 3's schedules give at a few steps, and the learning rates
Keras 3's ReduceLROnPlateau leaves after each epoch of a constant loss, which tests/schedules.rs
pins. Not run by CI:

    /work/venv-keras/bin/python tools/reference/schedules.py

Each schedule line is `name: [lr at step 0, 1, ...]` for the steps in STEPS, computed by Keras
in float32; the plateau line lists the learning rate after each of PLATEAU_EPOCHS epochs.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

S = keras.optimizers.schedules
STEPS = [0, 1, 2, 3, 5, 7, 10, 15, 20, 30]
SCHEDULES = {
    "exponential": S.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5),
    "exponential_staircase": S.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5,
                                                staircase=True),
    "piecewise": S.PiecewiseConstantDecay(boundaries=[2, 7], values=[0.3, 0.2, 0.1]),
    "cosine": S.CosineDecay(0.1, decay_steps=10, alpha=0.1),
    "cosine_warmup": S.CosineDecay(0.0, decay_steps=10, alpha=0.1, warmup_target=0.2,
                                   warmup_steps=5),
}

for name, schedule in SCHEDULES.items():
    values = [float(schedule(step)) for step in STEPS]
    print(f"{name}: [{', '.join(repr(v) for v in values)}]")

# ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1, min_lr=0.02) on an SGD
# model at learning rate 0.1 whose loss is 0.0 at every epoch.
PLATEAU_EPOCHS = 9
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1,
                                            min_lr=0.02)
plateau.set_model(model)
plateau.on_train_begin()
rates = []
for epoch in range(PLATEAU_EPOCHS):
    plateau.on_epoch_end(epoch, {"loss": 0.0})
    rates.append(float(model.optimizer.learning_rate))
print(f"plateau: [{', '.join(repr(r) for r in rates)}]")
