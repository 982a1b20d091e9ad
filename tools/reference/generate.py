#!/usr/bin/env python3
"""Writes Keras 3 reference cases for kiln's layers and optimizers into tests/data/reference/.

Not run by CI. Each case is one safetensors file in the schema of
tests/data/reference/README.md: `spec` is the layer's (or optimizer's) full Keras `get_config()`
plus `class`; inputs, weights and the cotangent are random normal float32 values; the forward
and backward passes are computed in float64 from those float32 values (a float64 copy of the
layer) and rounded to float32. Optimizer cases apply the optimizer to float64 copies of
float32 variables for a few steps of float32 gradients, and round the result to float32.

    python3 -m venv /work/venv-keras
    /work/venv-keras/bin/pip install tensorflow-cpu keras keras-hub
    /work/venv-keras/bin/python tools/reference/generate.py            # every case
    /work/venv-keras/bin/python tools/reference/generate.py prelu      # cases by name

A new layer adds its cases to CASES below, a new optimizer option to OPTIMIZER_CASES.
"""

import json
import os
import struct
import sys
import zlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "reference")

# The tolerances of the other cases in the folder (float32 against float64 references).
RTOL, ATOL = 1e-4, 1e-5

# name -> (layer factory, input shapes including the batch[, call arguments such as
# {"training": True}, which join the spec])
CASES = {
    "dense_relu_full_config": (lambda: keras.layers.Dense(5, activation="relu"), [(4, 7)]),
    "prelu": (lambda: keras.layers.PReLU(), [(4, 3, 5)]),
    "prelu_shared_axes": (lambda: keras.layers.PReLU(shared_axes=[1]), [(4, 3, 5)]),
    "batch_norm_nhwc_training": (lambda: keras.layers.BatchNormalization(), [(3, 4, 5, 6)],
                                 {"training": True}),
    # Keras's Dot on sequences: a batched contraction over the given axes.
    "dot_rank3_axes1": (lambda: keras.layers.Dot(axes=1), [(3, 5, 4), (3, 5, 6)]),
    "dot_rank3_axes2": (lambda: keras.layers.Dot(axes=2), [(3, 5, 4), (3, 6, 4)]),
    "dot_rank3_axes_1_2": (lambda: keras.layers.Dot(axes=(1, 2)), [(3, 5, 4), (3, 6, 5)]),
    "dot_rank3_normalize": (lambda: keras.layers.Dot(axes=2, normalize=True),
                            [(3, 5, 4), (3, 6, 4)]),
    "batch_norm_nhwc_inference": (lambda: keras.layers.BatchNormalization(), [(3, 4, 5, 6)],
                                  {"training": False}),
    # Convolutions: every Conv1D padding, strides and dilation; Conv2D dilation.
    "conv1d_valid": (lambda: keras.layers.Conv1D(4, 3), [(2, 9, 3)]),
    "conv1d_same": (lambda: keras.layers.Conv1D(4, 4, padding="same"), [(2, 9, 3)]),
    "conv1d_causal": (lambda: keras.layers.Conv1D(4, 3, padding="causal"), [(2, 9, 3)]),
    "conv1d_s2": (lambda: keras.layers.Conv1D(4, 3, strides=2, padding="same"), [(2, 10, 3)]),
    "conv1d_d2": (lambda: keras.layers.Conv1D(4, 3, dilation_rate=2, padding="causal"),
                  [(2, 9, 3)]),
    "conv2d_d2_valid": (lambda: keras.layers.Conv2D(4, 3, dilation_rate=2), [(2, 8, 7, 3)]),
    "conv2d_d2_same": (lambda: keras.layers.Conv2D(5, (3, 2), dilation_rate=2, padding="same",
                                                   activation="relu"), [(2, 7, 8, 3)]),
    # Pooling: `same` averages divide by the count of in-bounds elements.
    "averagepooling2d_p3_s2_same": (lambda: keras.layers.AveragePooling2D(3, 2, padding="same"),
                                    [(2, 7, 6, 3)]),
    "averagepooling2d_p2_s1_same": (lambda: keras.layers.AveragePooling2D(2, 1, padding="same"),
                                    [(2, 5, 4, 3)]),
    "maxpooling1d_p2_s2_valid": (lambda: keras.layers.MaxPooling1D(2), [(2, 9, 3)]),
    "maxpooling1d_p3_s1_same": (lambda: keras.layers.MaxPooling1D(3, 1, padding="same"),
                                [(2, 8, 3)]),
    "averagepooling1d_p2_s2_valid": (lambda: keras.layers.AveragePooling1D(2), [(2, 9, 3)]),
    "averagepooling1d_p3_s2_same": (lambda: keras.layers.AveragePooling1D(3, 2, padding="same"),
                                    [(2, 8, 3)]),
    # Windows that tile the input exactly (kiln reduces a reshape of the input instead).
    "maxpooling2d_p2_s2_tiled": (lambda: keras.layers.MaxPooling2D(2), [(2, 6, 8, 3)]),
    "averagepooling2d_p3_s3_tiled": (lambda: keras.layers.AveragePooling2D(3), [(2, 6, 9, 3)]),
    "maxpooling1d_p2_s2_tiled": (lambda: keras.layers.MaxPooling1D(2), [(2, 8, 3)]),
    "averagepooling1d_p4_s4_tiled": (lambda: keras.layers.AveragePooling1D(4), [(2, 8, 3)]),
    "global_avg_pool1d": (lambda: keras.layers.GlobalAveragePooling1D(), [(2, 7, 3)]),
    "global_max_pool1d": (lambda: keras.layers.GlobalMaxPooling1D(), [(2, 7, 3)]),
    "global_avg_pool2d": (lambda: keras.layers.GlobalAveragePooling2D(), [(2, 5, 4, 3)]),
    "global_max_pool2d": (lambda: keras.layers.GlobalMaxPooling2D(), [(2, 5, 4, 3)]),
    # ZeroPadding2D in its three forms (Keras's config always holds the third).
    "zero_padding2d_int": (lambda: keras.layers.ZeroPadding2D(2), [(2, 3, 4, 3)]),
    "zero_padding2d_pair": (lambda: keras.layers.ZeroPadding2D((1, 2)), [(2, 3, 4, 3)]),
    "zero_padding2d_full": (lambda: keras.layers.ZeroPadding2D(((1, 0), (2, 3))),
                            [(2, 3, 4, 3)]),
    # Normalisation along one axis of each item: RMS, and layer norm on a middle axis.
    "rms_norm": (lambda: keras.layers.RMSNormalization(), [(3, 4, 6)]),
    "layer_norm_axis1_no_center": (
        lambda: keras.layers.LayerNormalization(axis=1, epsilon=1e-5, center=False),
        [(3, 5, 4)]),
    # Attention with an explicit mask (one query step fully masked: uniform, not NaN), a key
    # of another width than the value, heads × key_dim (3 × 3) not a multiple of 4.
    "mha_attention_mask": (
        lambda: keras.layers.MultiHeadAttention(num_heads=3, key_dim=3, value_dim=2),
        [(2, 5, 8), (2, 6, 7), (2, 6, 5), (2, 5, 6)],
        {"inputs": ["query", "value", "key", "attention_mask"]}),
    # Self-attention of one step, causal, with an output width of its own.
    "mha_self_t1": (
        lambda: keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, output_shape=5),
        [(3, 1, 6)], {"inputs": ["query"], "use_causal_mask": True}),
    # KerasHub's position layers and Transformer blocks, with their defaults.
    "position_embedding": (lambda: keras_hub.layers.PositionEmbedding(sequence_length=7),
                           [(2, 5, 4)]),
    "sine_position_encoding": (lambda: keras_hub.layers.SinePositionEncoding(), [(2, 5, 6)]),
    "transformer_encoder": (
        lambda: keras_hub.layers.TransformerEncoder(intermediate_dim=16, num_heads=2),
        [(2, 5, 8)]),
    "transformer_decoder": (
        lambda: keras_hub.layers.TransformerDecoder(intermediate_dim=16, num_heads=2),
        [(2, 5, 8), (2, 6, 8)], {"inputs": ["decoder_sequence", "encoder_sequence"]}),
    # Recurrent layers: running backwards (the output sequence stays reversed), the final
    # states (`return_state`: output, then states), and each Bidirectional merge mode.
    "lstm_go_backwards": (lambda: keras.layers.LSTM(5, return_sequences=True, go_backwards=True),
                          [(3, 6, 4)]),
    "simplernn_go_backwards_last": (lambda: keras.layers.SimpleRNN(5, go_backwards=True),
                                    [(3, 6, 4)]),
    "gru_reset_before": (lambda: keras.layers.GRU(5, reset_after=False, return_sequences=True),
                         [(3, 6, 4)]),
    "lstm_return_state": (lambda: keras.layers.LSTM(5, return_state=True), [(3, 6, 4)]),
    "gru_return_state_seq": (lambda: keras.layers.GRU(5, return_sequences=True,
                                                      return_state=True), [(3, 6, 4)]),
    "bidirectional_concat": (lambda: keras.layers.Bidirectional(
        keras.layers.LSTM(5, return_sequences=True)), [(3, 6, 4)]),
    "bidirectional_sum": (lambda: keras.layers.Bidirectional(
        keras.layers.GRU(5, return_sequences=True), merge_mode="sum"), [(3, 6, 4)]),
    "bidirectional_mul": (lambda: keras.layers.Bidirectional(
        keras.layers.SimpleRNN(5), merge_mode="mul"), [(3, 6, 4)]),
    "bidirectional_ave": (lambda: keras.layers.Bidirectional(
        keras.layers.LSTM(5), merge_mode="ave"), [(3, 6, 4)]),
}

# name -> (layer factories, input shape including the batch, classes[, vocabulary]):
# Sequential models trained with sparse categorical cross-entropy and Adam(1e-3) in the schema
# of seed_mlp. With a vocabulary the input is token ids, row r ending in padding zeros after
# 1 + r % T ids (for an Embedding's mask_zero).
MODEL_CASES = {
    # Stacked recurrent layers: the first returns its sequence to the second.
    "stacked_lstm_gru": ([lambda: keras.layers.LSTM(6, return_sequences=True),
                          lambda: keras.layers.GRU(5),
                          lambda: keras.layers.Dense(3, activation="softmax")], (4, 7, 3), 3),
    # Keras's implicit mask: averaged over the valid steps, and skipped by a recurrent layer.
    "embedding_mask_pool": ([lambda: keras.layers.Embedding(12, 4, mask_zero=True),
                             lambda: keras.layers.GlobalAveragePooling1D(),
                             lambda: keras.layers.Dense(3, activation="softmax")], (4, 6), 3, 12),
    "embedding_mask_lstm": ([lambda: keras.layers.Embedding(12, 4, mask_zero=True),
                             lambda: keras.layers.LSTM(5),
                             lambda: keras.layers.Dense(3, activation="softmax")], (4, 6), 3, 12),
    # Recurrent layers with return_sequences pass the mask on: the second LSTM and the pooling
    # skip the padded steps too.
    "embedding_mask_stacked_lstm": ([lambda: keras.layers.Embedding(12, 4, mask_zero=True),
                                     lambda: keras.layers.LSTM(5, return_sequences=True),
                                     lambda: keras.layers.LSTM(4),
                                     lambda: keras.layers.Dense(3, activation="softmax")],
                                    (4, 6), 3, 12),
    "embedding_mask_bidirectional_pool": (
        [lambda: keras.layers.Embedding(12, 4, mask_zero=True),
         lambda: keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True)),
         lambda: keras.layers.GlobalAveragePooling1D(),
         lambda: keras.layers.Dense(3, activation="softmax")], (4, 6), 3, 12),
}

# The optimizer cases' tolerances (float32 against float64 references), as the shared ones.
OPT_RTOL, OPT_ATOL = 1e-5, 1e-6

# name -> (optimizer factory, variable names). Gradients are random normal, scaled per step by
# GRADIENT_SCALES so that clipping acts on some steps and not on others.
OPTIMIZER_CASES = {
    "sgd_clipnorm": (lambda: keras.optimizers.SGD(0.1, clipnorm=1.0), ["w"]),
    "sgd_clipvalue": (lambda: keras.optimizers.SGD(0.1, clipvalue=0.5), ["w"]),
    "sgd_global_clipnorm": (lambda: keras.optimizers.SGD(0.1, global_clipnorm=1.0), ["w", "b"]),
    "sgd_momentum_clipnorm": (lambda: keras.optimizers.SGD(0.1, momentum=0.9, clipnorm=1.0),
                              ["w"]),
    "adam_clipnorm": (lambda: keras.optimizers.Adam(0.01, clipnorm=1.0), ["w"]),
    "adam_clipvalue": (lambda: keras.optimizers.Adam(0.01, clipvalue=0.5), ["w"]),
    "adam_global_clipnorm": (lambda: keras.optimizers.Adam(0.01, global_clipnorm=1.0),
                             ["w", "b"]),
    "adamw_global_clipnorm": (lambda: keras.optimizers.AdamW(0.01, global_clipnorm=1.0),
                              ["w", "b"]),
    "rmsprop_clipvalue": (lambda: keras.optimizers.RMSprop(0.01, clipvalue=0.5), ["w"]),
}
GRADIENT_SCALES = [3.0, 0.2, 1.0]
SHAPES = {"w": (4, 3), "b": (3,)}


def write_safetensors(path, tensors, metadata):
    """The safetensors format: a little-endian u64 header size, the JSON header, the data."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, array in tensors.items():
        dtype = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[array.dtype]
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def spread(layer, inputs, **call):
    """Calls a layer with its inputs as arguments."""
    return layer(*inputs, **call)


def merged(layer, inputs, **call):
    """Calls a merge layer, which takes its inputs as one list."""
    return layer(inputs, **call)


def weight_value(weight, rng):
    """0.5 · normal; a variance is 0.5 + |that|, so that inference divides by a real root."""
    value = 0.5 * rng.standard_normal(weight.shape)
    if "variance" in weight.name:
        value = 0.5 + np.abs(value)
    return value.astype(np.float32)


def weight_name(w, layer):
    """A weight's path below `layer`: its name (`kernel`), or in a layer made of layers the
    names of the nested layers first, joined by `.` (`query.kernel`,
    `self_attention_layer.query.kernel`). Recurrent layers drop Keras's cell level and keep
    `/` (`kernel` for `lstm/lstm_cell/kernel`, `forward_lstm/kernel` in a Bidirectional), as
    the harness reads them."""
    parts = w.path.split("/")
    parts = parts[parts.index(layer.name) + 1:]
    recurrent = any(p.endswith("_cell") for p in parts) or isinstance(
        layer, keras.layers.Bidirectional)
    kept = [p for p in parts if not p.endswith("_cell")]
    return ("/" if recurrent else ".").join(kept)


def input_value(role, shape, rng):
    """Random normal, or for an `attention_mask` random 0/1 (1 = attend) with the first query
    step of the first item fully masked."""
    if role != "attention_mask":
        return rng.standard_normal(shape).astype(np.float32)
    mask = (rng.random(shape) < 0.7).astype(np.float32)
    mask[0, 0, :] = 0.0
    return mask


def caller(layer, roles):
    """How the case calls the layer: with its inputs by keyword when the case names their
    roles (`inputs`: `query`, `value`, `key`, `attention_mask`), else as merges or in order."""
    if roles:
        def by_role(layer, inputs, **call):
            named = {r: (tf.cast(x, "bool") if r == "attention_mask" else x)
                     for r, x in zip(roles, inputs)}
            if "query" in named:
                named.setdefault("value", named["query"])  # self-attention
            return layer(**named, **call)
        return by_role
    return merged if isinstance(layer, keras.src.layers.merging.base_merge.Merge) else spread


def float64(config):
    """`config` with every dtype float64, nested layers' (a Bidirectional's) included."""
    if isinstance(config, dict):
        return {k: "float64" if k == "dtype" else float64(v) for k, v in config.items()}
    return config


def layer_case(name, make, shapes, call=None):
    """`call` holds the call's arguments (`training`, `use_causal_mask`) and optionally
    `inputs`, the role of each input; all join the spec. A mask input gets a zero gradient."""
    call = dict(call or {})
    roles = call.get("inputs")
    call_args = {k: v for k, v in call.items() if k != "inputs"}
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    keras.backend.clear_session()  # default names without a counter (`forward_lstm`)
    layer = make()
    inputs = [input_value((roles or [None] * len(shapes))[i], s, rng)
              for i, s in enumerate(shapes)]
    apply = caller(layer, roles)
    apply(layer, inputs)  # builds the weights
    weights = [(weight_name(w, layer), weight_value(w, rng)) for w in layer.weights]
    config = layer.get_config()
    spec = {"class": type(layer).__name__, **config, **call}

    # The same layer in float64, fed the float32 values.
    layer64 = type(layer).from_config(float64(config))
    x64 = [tf.constant(x, dtype=tf.float64) for x in inputs]
    apply(layer64, x64)
    layer64.set_weights([w.astype(np.float64) for _, w in weights])
    with tf.GradientTape() as tape:
        tape.watch(x64)
        y = apply(layer64, x64, **call_args)
        # Several outputs (`return_state`): `output`, `output.1`, …, each with its cotangent.
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        rs = [rng.standard_normal(v.shape).astype(np.float32) for v in ys]
        loss = sum(tf.reduce_sum(v * tf.constant(r, dtype=tf.float64)) for v, r in zip(ys, rs))
    grads = tape.gradient(loss, x64 + list(layer64.trainable_weights))

    tensors = {f"input.{i}": x for i, x in enumerate(inputs)}
    tensors.update({f"param.{n}": w for n, w in weights})
    for k, (v, r) in enumerate(zip(ys, rs)):
        suffix = f".{k}" if k else ""
        tensors[f"output{suffix}"] = v.numpy().astype(np.float32)
        tensors[f"grad_output{suffix}"] = r
    for i, g in enumerate(grads[: len(inputs)]):
        zero = np.zeros_like(inputs[i])  # no gradient reaches a mask
        tensors[f"grad_input.{i}"] = zero if g is None else g.numpy().astype(np.float32)
    trainable = [weight_name(w, layer) for w in layer.trainable_weights]
    for n, g in zip(trainable, grads[len(inputs):]):
        tensors[f"grad_param.{n}"] = g.numpy().astype(np.float32)
    # Non-trainable weights (batch-norm moving statistics) after the call.
    for w in layer64.non_trainable_weights:
        tensors[f"after.{weight_name(w, layer64)}"] = w.numpy().astype(np.float32)
    metadata = {"kind": "layer", "spec": json.dumps(spec, sort_keys=True),
                "rtol": str(RTOL), "atol": str(ATOL)}
    path = os.path.join(OUT, f"{name}.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {os.path.normpath(path)}: {', '.join(tensors)}")


def token_ids(shape, vocab, rng):
    """Ids in 1..vocab, row r followed by zeros (padding) after its first 1 + r % T."""
    x = rng.integers(1, vocab, shape).astype(np.int32)
    for r in range(shape[0]):
        x[r, 1 + r % shape[1]:] = 0
    return x


def model_case(name, makers, shape, classes, vocab=None):
    """`param.LAYER.NAME`, the batch `input.0` and labels `input.1`, the probabilities `output`,
    the mean loss `loss` with its gradients `grad_param.*`, and the weights after one Adam step
    `after_adam.*`, all in float64 from float32 values."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    keras.backend.clear_session()
    x = (rng.standard_normal(shape).astype(np.float32) if vocab is None
         else token_ids(shape, vocab, rng))
    y = rng.integers(0, classes, shape[0]).astype(np.int32)
    layers = [make() for make in makers]
    dtype = "float32" if vocab is None else "int32"
    model = keras.Sequential([keras.Input(shape[1:], dtype=dtype)] + layers)
    weights = [[(weight_name(w, layer), weight_value(w, rng)) for w in layer.weights] for layer in layers]
    model64 = keras.Sequential([keras.Input(shape[1:], dtype="float64" if vocab is None
                                            else "int32")] +
                               [type(l).from_config(float64(l.get_config())) for l in layers])
    model64.set_weights([w.astype(np.float64) for ws in weights for _, w in ws])
    x64 = tf.constant(x, dtype=tf.float64 if vocab is None else tf.int32)
    with tf.GradientTape() as tape:
        p = model64(x64)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, p))
    # An embedding's gradient comes as row slices: made dense.
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model64.trainable_weights)]
    tensors = {"input.0": x, "input.1": y, "output": p.numpy().astype(np.float32),
               "loss": np.array([loss.numpy()], dtype=np.float32)}
    names = [f"{i}.{n}" for i, ws in enumerate(weights) for n, _ in ws]
    tensors.update({f"param.{n}": w for n, (_, w) in zip(names, [w for ws in weights for w in ws])})
    tensors.update({f"grad_param.{n}": g.numpy().astype(np.float32)
                    for n, g in zip(names, grads)})
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.apply_gradients(zip(grads, model64.trainable_weights))
    tensors.update({f"after_adam.{n}": w.numpy().astype(np.float32)
                    for n, w in zip(names, model64.trainable_weights)})
    spec = {"class": "Sequential", "example": name, "loss": "sparse_categorical_crossentropy",
            "layers": [{"class": type(l).__name__, **l.get_config()} for l in layers],
            "optimizer": {"class": "Adam", "learning_rate": 0.001, "beta_1": 0.9,
                          "beta_2": 0.999, "epsilon": 1e-07},
            "note": "param.LAYER_INDEX.WEIGHT_NAME, layers counted from 0 in model order; "
                    "after_adam.* are the params after one Adam step on this batch"}
    metadata = {"kind": "model", "spec": json.dumps(spec, sort_keys=True),
                "rtol": str(RTOL), "atol": str(ATOL)}
    path = os.path.join(OUT, f"{name}.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {os.path.normpath(path)}: {', '.join(tensors)}")


def optimizer_case(name, make, variables):
    """`param.NAME` the start values, the gradient of step N `input.N` (one variable) or
    `input.N.NAME` (several), the values after all steps `output` or `output.NAME`."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    optimizer = make()
    suffix = (lambda v: "") if len(variables) == 1 else (lambda v: f".{v}")
    start = {v: rng.standard_normal(SHAPES[v]).astype(np.float32) for v in variables}
    tensors = {f"param.{v}": x for v, x in start.items()}
    state = [keras.Variable(x.astype(np.float64), dtype="float64", name=v)
             for v, x in start.items()]
    for step, scale in enumerate(GRADIENT_SCALES):
        grads = {v: (scale * rng.standard_normal(SHAPES[v])).astype(np.float32)
                 for v in variables}
        tensors.update({f"input.{step}{suffix(v)}": g for v, g in grads.items()})
        optimizer.apply_gradients(
            [(tf.constant(g, dtype=tf.float64), var) for g, var in zip(grads.values(), state)])
    for v, var in zip(variables, state):
        tensors[f"output{suffix(v)}"] = var.numpy().astype(np.float32)
    spec = {"class": type(optimizer).__name__, **optimizer.get_config(),
            "note": "input.N is the gradient of step N; output is the variable after all steps"}
    metadata = {"kind": "optimizer", "spec": json.dumps(spec, sort_keys=True),
                "rtol": str(OPT_RTOL), "atol": str(OPT_ATOL)}
    path = os.path.join(OUT, f"{name}.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {os.path.normpath(path)}: {', '.join(tensors)}")


def main(names):
    every = {**CASES, **OPTIMIZER_CASES, **MODEL_CASES}
    unknown = [n for n in names if n not in every]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; the cases are {sorted(every)}")
    for name in names or every:
        if name in CASES:
            layer_case(name, *CASES[name])
        elif name in MODEL_CASES:
            model_case(name, *MODEL_CASES[name])
        else:
            optimizer_case(name, *OPTIMIZER_CASES[name])


if __name__ == "__main__":
    main(sys.argv[1:])
