"""The math of ONNX LSTM, GRU and RNN for one direction, unrolled over a static sequence.

Two forms. The primitive form projects the inputs of every step with one matmul
(one FULLY_CONNECTED for the whole sequence) and runs each step with matmul, add,
sigmoid, tanh and mul. The fused form (LSTM only) wraps the same LSTM in a
tf.function carrying the Keras-2 LSTM attributes, which the TFLite MLIR converter
replaces by one UNIDIRECTIONAL_SEQUENCE_LSTM (its ConvertKerasLSTMLayer).

Time runs along `axis` of the sequence tensors (0 for ONNX layout 0, 1 for layout 1),
so the input is never transposed. A state of None stands for zeros: its terms are
left out rather than multiplied by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

# ONNX LSTM gate order is i, o, f, c; Keras (and the TFLite fused kernel) use i, f, c, o
KERAS_GATES = (0, 2, 3, 1)


@dataclass(frozen=True)
class Weights:
    """One direction's constants in ONNX gate order: w [G*H, I], r [G*H, H], biases [G*H]."""

    w: np.ndarray
    r: np.ndarray
    wb: np.ndarray
    rb: np.ndarray
    peep: np.ndarray | None = None  # LSTM P [3H]: i, o, f


@dataclass(frozen=True)
class Cell:
    kind: str  # "LSTM", "GRU" or "RNN"
    clip: float | None = None
    linear_before_reset: bool = False


def project(x: tf.Tensor, w: np.ndarray, bias: np.ndarray, axis: int) -> list[tf.Tensor]:
    """x @ w.T + bias for every step at once (one FULLY_CONNECTED), split into steps."""
    dims = x.shape.as_list()
    flat = tf.matmul(tf.reshape(x, [dims[0] * dims[1], dims[2]]), np.ascontiguousarray(w.T)) + bias
    return tf.unstack(tf.reshape(flat, [dims[0], dims[1], w.shape[0]]), axis=axis)


def _clip(t: tf.Tensor, cell: Cell) -> tf.Tensor:
    return t if cell.clip is None else tf.clip_by_value(t, -cell.clip, cell.clip)


def _recur(h: tf.Tensor | None, r: np.ndarray) -> tf.Tensor | None:
    return None if h is None else tf.matmul(h, np.ascontiguousarray(r.T))


def _plus(a: tf.Tensor, b) -> tf.Tensor:
    return a if b is None else a + b


def lstm_step(xp, h, c, wt: Weights, cell: Cell):
    pre = tf.split(_plus(xp, _recur(h, wt.r)), 4, axis=1)  # i, o, f, c
    p = (None, None, None) if wt.peep is None else np.split(wt.peep, 3)  # i, o, f
    i = tf.sigmoid(_clip(_plus(pre[0], None if c is None or p[0] is None else c * p[0]), cell))
    g = tf.tanh(_clip(pre[3], cell))
    c_new = i * g
    if c is not None:
        f = tf.sigmoid(_clip(_plus(pre[2], None if p[2] is None else c * p[2]), cell))
        c_new = f * c + c_new
    o = tf.sigmoid(_clip(_plus(pre[1], None if p[1] is None else c_new * p[1]), cell))
    return o * tf.tanh(c_new), c_new


def gru_step(xp, h, wt: Weights, cell: Cell):
    hidden = wt.r.shape[1]
    rb_h = wt.rb[2 * hidden :]
    if h is None and not cell.linear_before_reset:
        # from a zero state the reset gate multiplies nothing; leaving its part of the
        # split unread made TF's int8 quantizer keep that SPLIT in float
        z = tf.sigmoid(_clip(xp[:, :hidden], cell))
        return (1.0 - z) * tf.tanh(_clip(xp[:, 2 * hidden :] + rb_h, cell))
    xz, xr, xh = tf.split(xp, 3, axis=1)
    if cell.linear_before_reset:
        hz, hr, hh = (None, None, None) if h is None else tf.split(_recur(h, wt.r), 3, axis=1)
        r = tf.sigmoid(_clip(_plus(xr, hr), cell))
        candidate = r * _plus(tf.constant(rb_h), hh)
    else:
        hz, hr = tf.split(_recur(h, wt.r[: 2 * hidden]), 2, axis=1)
        r = tf.sigmoid(_clip(xr + hr, cell))
        candidate = _recur(r * h, wt.r[2 * hidden :]) + rb_h
    z = tf.sigmoid(_clip(_plus(xz, hz), cell))
    h_tilde = tf.tanh(_clip(xh + candidate, cell))
    if h is None:
        return (1.0 - z) * h_tilde
    return h_tilde + z * (h - h_tilde)


def rnn_step(xp, h, wt: Weights, cell: Cell):
    return tf.tanh(_clip(_plus(xp, _recur(h, wt.r)), cell))


def input_bias(wt: Weights, cell: Cell) -> np.ndarray:
    """The bias added to the input projection; GRU keeps the candidate's Rb for the step."""
    if cell.kind != "GRU":
        return wt.wb + wt.rb
    hidden = wt.r.shape[1]
    return wt.wb + np.concatenate([wt.rb[: 2 * hidden], np.zeros(hidden, wt.rb.dtype)])


def primitive(x, h0, c0, wt: Weights, cell: Cell, axis: int, reverse: bool):
    """One direction: (Y [.. T ..] along `axis`, final h, final c or None)."""
    steps = project(x, wt.w, input_bias(wt, cell), axis)
    order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))
    h, c, outs = h0, c0, [None] * len(steps)
    for t in order:
        if cell.kind == "LSTM":
            h, c = lstm_step(steps[t], h, c, wt, cell)
        elif cell.kind == "GRU":
            h = gru_step(steps[t], h, wt, cell)
        else:
            h = rnn_step(steps[t], h, wt, cell)
        outs[t] = h
    y = tf.stack(outs, axis=axis)
    # the final h read back from Y: as a second consumer of the last step's MUL, TF's
    # int8 quantizer leaves a forward LSTM's Y_h float (a float output of an int8 model)
    last = order[-1]
    return y, (y[last] if axis == 0 else y[:, last]), c


# -- fused LSTM ---------------------------------------------------------------------
def keras_weights(wt: Weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kernel [I, 4H], recurrent kernel [H, 4H], bias [4H] in Keras gate order."""
    hidden = wt.r.shape[1]

    def reorder(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in KERAS_GATES])

    return reorder(wt.w).T.copy(), reorder(wt.r).T.copy(), reorder(wt.wb + wt.rb)


def _keras_lstm(x, h, c, kernel, recurrent_kernel, bias, *, axis: int):
    # The body only runs where the TFLite converter does not fuse (TF itself, tests);
    # the converter matches the 6 arguments and 5 results by position.
    outs = []
    for xt in tf.unstack(x, axis=axis):
        i, f, g, o = tf.split(tf.matmul(xt, kernel) + tf.matmul(h, recurrent_kernel) + bias, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        outs.append(h)
    # ConvertKerasLSTMLayer replaces results 2-4 by constants of shape [1] (TF 2.21
    # builds them from a 1-element value): any other shape fails its verifier.
    unused = tf.zeros([1], x.dtype)
    return outs[-1], tf.stack(outs, axis=axis), unused, unused, unused


def fused_lstm(x, h0, c0, wt: Weights, axis: int, reverse: bool, key: str):
    """One direction as a fusable Keras-LSTM function: (Y along `axis`, final h).

    The fused kernel writes its final state into its state inputs. Fed by constants,
    those become variable tensors that carry the state over to the next invocation;
    so each state input is computed from x here (plus a zero TFLite cannot fold away,
    min(|x|, 0)), which gives every invocation fresh state."""
    if reverse:
        x = tf.reverse(x, [axis])
    dims = x.shape.as_list()
    batch, hidden = dims[1 - axis], wt.r.shape[1]
    zero = tf.minimum(tf.abs(x[0, :, :1] if axis == 0 else x[:, 0, :1]), 0.0)
    zeros = tf.zeros([batch, hidden], x.dtype)
    # two different expressions: equal ones would be merged into one tensor for both states
    h_in = zero + (zeros if h0 is None else h0)
    c_in = zero * 0.5 + (zeros if c0 is None else c0)
    attrs = {"api_implements": f"lstm_{key}", "api_preferred_device": "CPU", "time_major": axis == 0,
             "go_backwards": False}  # fmt: skip
    fn = tf.function(lambda *a: _keras_lstm(*a, axis=axis), experimental_attributes=attrs, autograph=False)
    kernel, recurrent, bias = keras_weights(wt)
    last, y, *_ = fn(x, h_in, c_in, tf.constant(kernel), tf.constant(recurrent), tf.constant(bias))
    return (tf.reverse(y, [axis]) if reverse else y), last
