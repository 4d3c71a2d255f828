"""MatMul, Gemm and Einsum as one contraction: tf.matmul over labelled axes.

Every operand is a `Term`: a tensor plus one letter per stored axis. A
contraction groups letters into batch (both operands and the output),
contracted (both operands only), left and right (one operand and the output),
brings each operand to [batch..., free, contracted] (or the adjoint order, if
that is how it is stored) with reshapes merging each group, and runs one
tf.matmul. The result's letters become the output's layout permutation, so
no transpose is spent on putting the output in ONNX order.

A constant right operand with no batch letters is handed to tf.matmul as a
2-D array, which the TFLite converter turns into FULLY_CONNECTED (with any
following bias ADD fused); Gemm folds alpha, beta and transB into those
constants in numpy.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext, Value, move_axes, to_layout
from buildsys.converter.errors import Unsupported
from buildsys.converter.ir import Node
from buildsys.converter.registry import handles


@dataclass(frozen=True)
class Term:
    """A tensor (tf, or numpy when constant) with one letter per axis, in stored order."""

    data: Any  # a tf.Tensor, or an np.ndarray when constant
    letters: str

    @property
    def const(self) -> bool:
        return isinstance(self.data, np.ndarray)

    def dims(self) -> dict[str, int]:
        shape = self.data.shape if self.const else self.data.shape.as_list()
        if any(d is None for d in shape):
            raise Unsupported(f"needs static shapes, got {shape}")
        return dict(zip(self.letters, (int(d) for d in shape)))


def term(ctx: ConversionContext, name: str, letters: str, value: Value | None = None) -> Term:
    """The input `name` (or `value`, another way to compute it) whose ONNX axes are labelled `letters`."""
    value = value or ctx.value(name)
    if value.const is not None:
        return Term(value.const, letters)
    return Term(value.tensor, "".join(letters[a] for a in value.perm))


def arrange(t: Term, order: str):
    """The term's data with its axes in `order` (moving data only when it must)."""
    rel = [t.letters.index(c) for c in order]
    if t.const:
        return np.transpose(t.data, rel)
    return move_axes(t.data, rel)


def reshape(data, shape: list[int]):
    if list(data.shape) == list(shape):
        return data
    return data.reshape(shape) if isinstance(data, np.ndarray) else tf.reshape(data, shape)


def sum_out(t: Term, letters: set[str]) -> Term:
    """Sum over the term's axes labelled with any of `letters`."""
    axes = [i for i, c in enumerate(t.letters) if c in letters]
    if not axes:
        return t
    kept = "".join(c for c in t.letters if c not in letters)
    if t.const:
        return Term(np.sum(t.data, axis=tuple(axes)).astype(t.data.dtype), kept)
    return Term(tf.reduce_sum(t.data, axis=axes), kept)


def take_diagonals(t: Term) -> Term:
    """Fold every index repeated within the term ('ii->i') into one axis: the diagonal, as a
    multiply by an identity mask and a sum (MUL + SUM, no gather)."""
    while len(set(t.letters)) != len(t.letters):
        c = next(c for c in t.letters if t.letters.count(c) > 1)
        i, j = t.letters.index(c), t.letters.index(c, t.letters.index(c) + 1)
        shape = list(t.data.shape)
        if shape[i] != shape[j]:
            raise Unsupported(f"diagonal over index {c!r} of sizes {shape[i]} and {shape[j]}")
        mask_shape = [1] * len(shape)
        mask_shape[i] = mask_shape[j] = shape[i]
        dtype = t.data.dtype if t.const else t.data.dtype.as_numpy_dtype
        mask = np.eye(shape[i], dtype=dtype).reshape(mask_shape)
        letters = t.letters[:j] + t.letters[j + 1 :]
        if t.const:
            t = Term(np.sum(t.data * mask, axis=j).astype(dtype), letters)
        else:
            t = Term(tf.reduce_sum(t.data * tf.constant(mask), axis=j), letters)
    return t


def in_stored_order(t: Term, letters: set[str]) -> str:
    return "".join(c for c in t.letters if c in letters)


def adjoint_wanted(t: Term, batch: str, first: str, second: str, allowed: bool) -> bool:
    """True if the term is stored as [batch, second, first], so tf.matmul's adjoint flag
    gives [batch, first, second] for free."""
    return allowed and not t.const and bool(first) and bool(second) and t.letters == batch + second + first


def moved_anyway(t: Term, order: str, summed: str, right: str) -> bool:
    """True if the right operand must move to reach `order` ([batch..., k, n]) anyway: then it
    moves to [batch..., n, k] (adj_y) at the same cost, the weights layout of the per-head
    FULLY_CONNECTED an int8 build unrolls BATCH_MATMUL into (from [k, n] it would transpose
    every head again)."""
    if t.const or not summed or not right:
        return False
    rel = [t.letters.index(c) for c in order]
    return not layout.is_identity(rel) and not layout.moves_only_units(rel, t.data.shape.as_list())


def matrix(t: Term, batch: str, rows: str, cols: str, adjoint: bool, dims: dict[str, int]):
    """The term as a [batch..., rows, cols] matrix stack, or [batch..., cols, rows] if adjoint."""
    first, second = (cols, rows) if adjoint else (rows, cols)
    data = arrange(t, batch + first + second)
    own = t.dims()
    shape = [own[c] for c in batch] + [math.prod(dims[c] for c in first), math.prod(dims[c] for c in second)]
    return reshape(data, shape)


def contract(a: Term, b: Term, keep: str) -> Term:
    """Einsum of two terms keeping the letters in `keep` (every other letter is summed)."""
    needed = set(keep)
    a = sum_out(a, set(a.letters) - set(b.letters) - needed)
    b = sum_out(b, set(b.letters) - set(a.letters) - needed)
    dims_a, dims_b = a.dims(), b.dims()
    shared = set(a.letters) & set(b.letters)
    for c in shared - needed:
        if dims_a[c] != dims_b[c]:
            raise Unsupported(f"index {c!r} is summed over sizes {dims_a[c]} and {dims_b[c]}")
    for c in shared & needed:
        if dims_a[c] != dims_b[c] and 1 not in (dims_a[c], dims_b[c]):
            raise Unsupported(f"index {c!r} has sizes {dims_a[c]} and {dims_b[c]}")
    lead = a if not a.const or b.const else b
    batch = in_stored_order(lead, shared & needed)
    summed = in_stored_order(lead, shared - needed)
    left = in_stored_order(a, set(a.letters) - shared)
    right = in_stored_order(b, set(b.letters) - shared)
    dims = {**dims_a, **dims_b}
    # a constant right operand without batch axes stays 2-D so TFLite makes it FULLY_CONNECTED
    dense = b.const and not batch
    adj_a = adjoint_wanted(a, batch, left, summed, allowed=not dense)
    adj_b = adjoint_wanted(b, batch, summed, right, allowed=True) or moved_anyway(
        b, batch + summed + right, summed, right
    )
    x = matrix(a, batch, left, summed, adj_a, dims)
    y = matrix(b, batch, summed, right, adj_b, dims)
    if not batch and not left and not dense:
        # the TFLite converter folds [K] -> [1, K] -> MatMul -> drop-row into a BATCH_MATMUL
        # with a 1-D operand that it then rejects; a unit batch axis keeps the shapes legal
        x, y = reshape(x, [1, *x.shape]), reshape(y, [1, *y.shape])
    if a.const and b.const:
        out = np.matmul(x, y)
    elif not a.const and not b.const and x.dtype.is_floating:
        out = centred_matmul(x, y, adj_a, adj_b)
    else:
        out = tf.matmul(x, y, adjoint_a=adj_a, adjoint_b=adj_b)
    sizes = [max(dims_a[c], dims_b[c]) for c in batch] + [dims[c] for c in left + right]
    return Term(reshape(out, sizes), batch + left + right)


def centred_matmul(x, y, adj_a: bool, adj_b: bool):
    """x @ y as x @ (y - m) + rowsum(x) * m, m the mean of y over the summed axis.

    TFLite's int8 BATCH_MATMUL mishandles a right operand that is far from zero-centred
    (attention's V after a bias, or softmax @ V): int8 cosine fell to 0.5. Centring it
    at run time is exact in float and keeps the int8 model within 1e-2."""
    mean = tf.reduce_mean(y, axis=-1 if adj_b else -2, keepdims=True)
    out = tf.matmul(x, y - mean, adjoint_a=adj_a, adjoint_b=adj_b)
    rows = tf.reduce_sum(x, axis=-2 if adj_a else -1, keepdims=True)
    # moving a unit axis is a reshape, not a transpose
    rows = tf.reshape(rows, [*rows.shape[:-2], rows.shape[-1] * rows.shape[-2], 1]) if adj_a else rows
    mean = tf.reshape(mean, [*mean.shape[:-2], 1, mean.shape[-2] * mean.shape[-1]]) if adj_b else mean
    return out + rows * mean


def emit(ctx: ConversionContext, name: str, t: Term, letters: str) -> None:
    """Store `t` as the ONNX value whose axes are labelled `letters` (letters in that order)."""
    if sorted(t.letters) != sorted(letters):
        raise AssertionError(f"result axes {t.letters!r} != output axes {letters!r}")
    if t.const:
        ctx.set_const(name, np.transpose(t.data, [t.letters.index(c) for c in letters]))
        return
    ctx.set(name, t.data, tuple(letters.index(c) for c in t.letters))


# -- MatMul ---------------------------------------------------------------------
@handles("MatMul", since=1)  # written for versions 1, 13
def matmul(ctx, node):
    ra, rb = ctx.value(node.input(0)).rank, ctx.value(node.input(1)).rank
    if ra == 0 or rb == 0:
        raise Unsupported("MatMul operands must have rank >= 1")
    # a 2-D constant right operand is shared by every batch of the left one: FULLY_CONNECTED
    dense = rb <= 2 and ctx.const(node.input(1)) is not None
    batch_rank = max(ra, rb) - 2
    lead = "".join(string.ascii_uppercase[i] for i in range(max(batch_rank, 0)))
    # a rank-1 operand has no row (left) or column (right) axis, as in numpy
    a_letters = "mk" if ra >= 2 else "k"
    b_letters = "kn" if rb >= 2 else "k"
    a_batch, b_batch = lead[len(lead) - max(ra - 2, 0) :], lead[len(lead) - max(rb - 2, 0) :]
    a_head = head_slice(ctx, node.input(0))
    a = term(ctx, node.input(0), a_batch + a_letters, a_head)
    if a_head is not None:
        a = rows_order(a)
    b_head = head_slice(ctx, node.input(1))
    b = term(ctx, node.input(1), b_batch + b_letters, b_head)
    if b_head is not None:
        b = weights_order(b)
    if not dense:
        # numpy broadcasting: missing leading batch axes act as size 1, which BATCH_MATMUL broadcasts
        a, b = with_unit_axes(a, lead), with_unit_axes(b, lead)
    out = lead + ("m" if ra >= 2 else "") + ("n" if rb >= 2 else "")
    emit(ctx, node.outputs[0], contract(a, b, out), out)


def head_slice(ctx: ConversionContext, name: str) -> Value | None:
    """The operand sliced again out of its source moved once into ONNX order, when it is one
    of several heads (Q, K, V) picked from a permuted tensor, through Transposes and scalar
    Muls; else None.

    Attention splits one QKV tensor by a 5-D Transpose (2, 0, 3, 1, 4) and three Gathers (or
    a Split and three Squeezes, as timm exports it). The Transpose only composes layouts, so
    each of Q, K and V would reach BATCH_MATMUL with its heads axis behind the tokens and need
    a TRANSPOSE of its own: one transpose of the QKV tensor serves all three, and K's own
    Transpose becomes BATCH_MATMUL's adj_y. A scalar Mul (timm's sqrt(scale) on Q and K) is
    taken along on the slice, or it would pin K's layout to a materialised transpose."""
    transposes: list[tuple[int, ...]] = []
    scales: list[np.ndarray] = []
    node = ctx.producer(name)
    while node is not None:
        if node.op_type == "Transpose" and ctx.value(node.input(0)).const is None:
            rank = ctx.value(node.input(0)).rank
            transposes.append(tuple(node.attr("perm") or range(rank - 1, -1, -1)))
        elif node.op_type == "Mul" and (scale := _scalar_operand(ctx, node)) is not None:
            scales.append(scale)
        else:
            break
        node = ctx.producer(_tensor_operand(ctx, node))
    if node is not None and node.op_type == "Split":
        return _split_piece(ctx, node, name, transposes, scales)
    picked = _picked_head(ctx, node)
    if picked is None:
        return None
    src, axis, index = picked
    source = ctx.value(src)
    if source.const is not None or layout.is_identity(source.perm):
        return None
    sliced = _moved_heads(ctx, src, axis)[index % source.shape[axis]]
    for scale in scales:
        sliced = sliced * tf.constant(scale.reshape(()).astype(sliced.dtype.as_numpy_dtype))
    perm = layout.identity(source.rank - 1)
    for t in reversed(transposes):
        perm = layout.apply_transpose(perm, t)
    return Value(sliced, perm)


def _split_piece(ctx: ConversionContext, split: Node, name: str, transposes: list, scales: list) -> Value | None:
    """The operand `name`, reached from a Split output through `transposes` and `scales`,
    sliced again out of the Split's source moved once to batch-first order; None when
    that would not save a transpose.

    YOLO11's attention (C2PSA) reshapes a 1x1 conv's channels-last output to [N, heads,
    channels, tokens] and splits Q, K and V along the channels: each piece arrives stored
    [N, tokens, heads, channels], its heads behind the tokens, and BATCH_MATMUL would need a
    TRANSPOSE per operand. Moving only the heads forward, [N, heads, tokens, channels], serves
    Q, K and V with one TRANSPOSE, and leaves every piece's matrix axes as [tokens, channels]:
    Q^T K is then Q K^T with adj_y, and an int8 build's per-head FULLY_CONNECTED takes K as
    its [n, k] weights without a transpose per head."""
    source = ctx.value(split.input(0))
    rank = source.rank
    axis = split.attr("axis", 0) % max(rank, 1)
    if source.const is not None or rank < 3 or axis < rank - 2 or _matmul_pieces(ctx, split) < 2:
        return None
    batch = tuple(range(rank - 2))
    if any(tuple(t[: rank - 2]) != batch for t in transposes):
        return None
    order = batch + tuple(a for a in source.perm if a >= rank - 2)
    if order == source.perm:
        return None
    piece = _moved_split(ctx, split, order)[split.outputs.index(_split_output(ctx, split, name))]
    for scale in scales:
        piece = piece * tf.constant(scale.reshape(()).astype(piece.dtype.as_numpy_dtype))
    perm = order
    for t in reversed(transposes):
        perm = layout.apply_transpose(perm, t)
    return Value(piece, perm)


def _moved_split(ctx: ConversionContext, split: Node, order: tuple[int, ...]) -> list:
    """The Split's pieces cut from its source stored in `order`, made once for all readers."""
    key = split.outputs[0] + "\x00moved-split"  # not an ONNX name: this Split's one moved copy
    if not ctx.has(key + "0"):
        moved = ctx.tensor(split.input(0), order)
        axis = split.attr("axis", 0) % len(order)
        sizes = [ctx.value(o).shape[axis] for o in split.outputs]
        for i, piece in enumerate(tf.split(moved, sizes, axis=layout.tf_axis(order, axis))):
            ctx.set(key + str(i), piece, order)
    return [ctx.value(key + str(i)).tensor for i in range(len(split.outputs))]


def _split_output(ctx: ConversionContext, split: Node, name: str) -> str:
    """The Split output that `name` is computed from (through Transposes and scalar Muls)."""
    while name not in split.outputs:
        producer = ctx.producer(name)
        if producer is None:  # never: the walk that found `split` came this way
            raise Unsupported(f"{name} is not computed from {split.outputs[0]}")
        name = _tensor_operand(ctx, producer)
    return name


def _matmul_pieces(ctx: ConversionContext, split: Node) -> int:
    """How many of the Split's outputs reach a MatMul operand through Transposes and scalar Muls."""
    count = 0
    for out in split.outputs:
        todo, seen = [out], False
        while todo and not seen:
            tensor = todo.pop()
            for reader in (n for n in ctx.graph.nodes if tensor in n.inputs[:2]):
                if reader.op_type == "MatMul":
                    seen = True
                elif reader.op_type == "Transpose" or _scalar_mul(ctx, reader):
                    todo.append(reader.outputs[0])
        count += seen
    return count


def _scalar_mul(ctx: ConversionContext, node: Node) -> bool:
    # a reader later in the graph may read values not converted yet: those are no constants
    ready = all(ctx.has(i) for i in node.inputs[:2])
    return node.op_type == "Mul" and ready and _scalar_operand(ctx, node) is not None


def _moved_heads(ctx: ConversionContext, src: str, axis: int) -> list:
    """`src` moved once into ONNX order and cut along `axis` by one UNPACK, each piece without
    that axis; made once for Q, K and V. A STRIDED_SLICE per head instead made timm's ViT-tiny
    35% slower in fp32 and int8 (measured), more than the transposes saved."""
    key = src + "\x00onnx-order"  # not an ONNX name: the one moved copy
    if not ctx.has(key + "0"):
        full = ctx.onnx_tensor(src)
        for i, piece in enumerate(tf.unstack(full, axis=axis)):
            ctx.set(key + str(i), piece, layout.identity(full.shape.rank - 1))
    return [ctx.value(key + str(i)).tensor for i in range(ctx.value(src).shape[axis])]


def _scalar_operand(ctx: ConversionContext, node: Node) -> np.ndarray | None:
    """The one-element constant a Mul scales its other (tensor) operand by, if it has one
    that cannot broadcast the other operand to a higher rank."""
    consts = [_constant(ctx, n) for n in node.inputs[:2]]
    if sum(c is not None for c in consts) != 1:
        return None
    scale = next(c for c in consts if c is not None)
    other = ctx.value(_tensor_operand(ctx, node))
    if scale.size != 1 or scale.ndim > other.rank or scale.dtype != other.dtype.as_numpy_dtype:
        return None
    return scale


def _constant(ctx: ConversionContext, name: str) -> np.ndarray | None:
    """The value of `name` if it is a constant or the Sqrt of one (timm's sqrt(scale), which
    the unary handlers leave for the TFLite converter to fold)."""
    value = ctx.const(name)
    node = ctx.producer(name)
    if value is None and node is not None and node.op_type == "Sqrt" and not node.domain:
        root = ctx.const(node.input(0))
        value = None if root is None or not np.issubdtype(root.dtype, np.floating) else np.sqrt(root)
    return value


def _tensor_operand(ctx: ConversionContext, node: Node) -> str:
    return node.input(1) if node.op_type == "Mul" and _constant(ctx, node.input(0)) is not None else node.input(0)


def _picked_head(ctx: ConversionContext, node: Node | None) -> tuple[str, int, int] | None:
    """(source, axis, index) if `node` picks one head out of several split from one source:
    a scalar Gather whose source feeds only Gathers, or a Squeeze of a unit piece of a Split."""
    if node is not None and node.op_type == "Gather" and _shared_split(ctx, node):
        index = ctx.const(node.input(1))
        if index is None or index.ndim != 0:
            return None
        return node.input(0), node.attr("axis", 0) % ctx.value(node.input(0)).rank, int(index)
    if node is None or node.op_type != "Squeeze":
        return None
    split = ctx.producer(node.input(0))
    if split is None or split.op_type != "Split" or len(split.outputs) < 2:
        return None
    shape = ctx.static_shape(split.input(0))
    axis = split.attr("axis", 0) % len(shape)
    squeezed = ctx.static_shape(node.outputs[0])
    if shape[axis] != len(split.outputs) or squeezed != shape[:axis] + shape[axis + 1 :]:
        return None
    return split.input(0), axis, split.outputs.index(node.input(0))


def weights_order(t: Term) -> Term:
    """A right operand [batch..., k, n] moved to [batch..., n, k] (then BATCH_MATMUL's adj_y).

    An int8 build unrolls BATCH_MATMUL into one FULLY_CONNECTED per matrix (tflow/quantize.py),
    whose weights are [n, k]: from [k, n] it would transpose every head's V on its own, one
    TRANSPOSE of the whole operand serves them all and costs fp32 nothing measurable."""
    if t.const or not t.letters.endswith("kn"):
        return t
    rel = [*range(len(t.letters) - 2), len(t.letters) - 1, len(t.letters) - 2]
    return Term(tf.transpose(t.data, rel), t.letters[:-2] + "nk")


def rows_order(t: Term) -> Term:
    """A left operand stored [batch..., k, m] moved to [batch..., m, k], the rows of an int8
    build's per-head FULLY_CONNECTED: as BATCH_MATMUL's adj_x it would be transposed once per
    head (YOLO11's V in V @ attn^T); one TRANSPOSE of the whole operand serves them all.
    A single matrix gains nothing there, and fp32 keeps its adj_x for free."""
    if t.const or not t.letters.endswith("km") or math.prod(t.dims()[c] for c in t.letters[:-2]) <= 1:
        return t
    rel = [*range(len(t.letters) - 2), len(t.letters) - 1, len(t.letters) - 2]
    return Term(tf.transpose(t.data, rel), t.letters[:-2] + "mk")


def _shared_split(ctx: ConversionContext, gather: Node) -> bool:
    """True if the Gather's source feeds other Gathers too (the heads it splits share a move)."""
    readers = [n for n in ctx.graph.nodes if gather.input(0) in n.inputs]
    return len(readers) > 1 and all(n.op_type == "Gather" for n in readers)


def with_unit_axes(t: Term, batch: str) -> Term:
    missing = "".join(c for c in batch if c not in t.letters)
    if not missing:
        return t
    shape = [1] * len(missing) + list(t.data.shape)
    return Term(reshape(t.data, shape), missing + t.letters)


# -- Gemm -----------------------------------------------------------------------
def gemm_operand(ctx: ConversionContext, name: str, transposed: bool):
    """A Gemm input as a 2-D [rows, cols] tensor (numpy when constant), honouring transA/transB.

    A stored-transposed input with the matching flag costs nothing; one with a unit
    dimension is only reshaped."""
    value = ctx.value(name)
    if value.rank != 2:
        raise Unsupported(f"Gemm input {name!r} has rank {value.rank}, expected 2")
    if value.const is not None:
        return value.const.T if transposed else value.const
    perm = layout.apply_transpose(value.perm, (1, 0)) if transposed else value.perm
    return to_layout(Value(value.tensor, perm), layout.identity(2))


@handles("Gemm", since=7)  # written for versions 7, 11, 13
def gemm(ctx, node):
    alpha = float(node.attr("alpha", 1.0))
    beta = float(node.attr("beta", 1.0))
    a = gemm_operand(ctx, node.input(0), bool(node.attr("transA", 0)))
    b = gemm_operand(ctx, node.input(1), bool(node.attr("transB", 0)))
    if isinstance(b, np.ndarray):
        # alpha rides on the weights, so the product is a plain FULLY_CONNECTED
        b, alpha = (b * np.asarray(alpha, b.dtype)).astype(b.dtype), 1.0
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        y = np.matmul(a, b) * np.asarray(alpha, a.dtype)
    else:
        y = tf.matmul(a, b)
        if alpha != 1.0:
            y = y * tf.constant(alpha, y.dtype)
    c = gemm_bias(ctx, node, beta)
    if c is not None:
        y = y + c
    if isinstance(y, np.ndarray):
        ctx.set_const(node.outputs[0], y.astype(a.dtype))
        return
    ctx.set(node.outputs[0], y, layout.identity(2))


def gemm_bias(ctx: ConversionContext, node: Node, beta: float):
    """beta * C, broadcastable to [M, N]; None when there is nothing to add."""
    name = node.input(2)
    if not name or beta == 0.0:
        return None
    value = ctx.value(name)
    if value.rank > 2:
        raise Unsupported(f"Gemm C has rank {value.rank}, expected at most 2")
    if value.const is not None:
        c = (value.const * np.asarray(beta, value.const.dtype)).astype(value.const.dtype)
        return None if not np.any(c) else c
    c = ctx.onnx_tensor(name)
    return c if beta == 1.0 else c * tf.constant(beta, c.dtype)


# -- Einsum ---------------------------------------------------------------------
def parse_equation(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Input terms and output letters with any '...' spelled out as digits (never einsum letters)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise Unsupported(f"Einsum {equation!r} names {len(terms)} operands but has {len(ranks)} inputs")
    ellipsis = max((r - (len(t) - 3) for t, r in zip(terms, ranks) if "..." in t), default=0)
    spare = "".join(str(i) for i in range(ellipsis))
    terms = [expand_ellipsis(t, r, spare, equation) for t, r in zip(terms, ranks)]
    if arrow:
        out = rhs.replace("...", spare)
    else:
        # implicit output: the ellipsis axes, then letters used once, alphabetically
        counts = "".join(terms)
        out = spare + "".join(sorted(c for c in set(counts) if c.isalpha() and counts.count(c) == 1))
    if len(set(out)) != len(out) or not set(out) <= set("".join(terms)):
        raise Unsupported(f"Einsum {equation!r}: invalid output indices")
    return terms, out


def expand_ellipsis(t: str, rank: int, spare: str, equation: str) -> str:
    if "..." not in t:
        if len(t) != rank:
            raise Unsupported(f"Einsum {equation!r}: term {t!r} does not match rank {rank}")
        return t
    count = rank - (len(t) - 3)
    if count < 0:
        raise Unsupported(f"Einsum {equation!r}: term {t!r} does not match rank {rank}")
    return t.replace("...", spare[len(spare) - count :])


@handles("Einsum", since=12)
def einsum(ctx, node):
    names = list(node.inputs)
    equation = node.attr("equation")
    terms, out = parse_equation(equation, [ctx.value(n).rank for n in names])
    try:
        operands = [take_diagonals(term(ctx, n, t)) for n, t in zip(names, terms)]
        result = operands[0]
        if len(operands) == 1:
            result = sum_out(result, set(result.letters) - set(out))
        for i, nxt in enumerate(operands[1:], start=1):
            later = set(out).union(*(t.letters for t in operands[i + 1 :]))
            result = contract(result, nxt, "".join(c for c in result.letters + nxt.letters if c in later))
        emit(ctx, node.outputs[0], result, out)
    except Unsupported as exc:
        raise Unsupported(f"Einsum {equation!r}: {exc.reason}") from None
