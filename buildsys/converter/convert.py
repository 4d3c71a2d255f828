"""Drive one conversion: check every node has a handler, then trace the graph into TF."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import onnx
import tensorflow as tf

from buildsys.converter import layout
from buildsys.converter.context import ConversionContext
from buildsys.converter.cut import flow_of_ir, suggest_cut
from buildsys.converter.errors import HandlerBug, Rejected, Unsupported, UnsupportedModel
from buildsys.converter.fusions import fuse_activations
from buildsys.converter.ir import Graph, Node, from_model
from buildsys.converter.registry import Registry, default_registry
from buildsys.converter.relayout import fuse_relayouts
from buildsys.errors import BuildsysError


@dataclass(frozen=True)
class IOSpec:
    """A graph input or output: `shape` is in stored (TF) order, `perm` maps ONNX to it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    perm: tuple[int, ...]


class Converter:
    """Callable over TF tensors (inputs in `inputs` order and layouts) returning the
    ONNX graph outputs; every call traces the whole graph once."""

    def __init__(
        self,
        model: onnx.ModelProto,
        registry: Registry | None = None,
        keep_layout: Collection[str] = (),
        nhwc_outputs: Collection[str] = (),
        label: str = "model",
    ):
        self.graph: Graph = fuse_relayouts(fuse_activations(from_model(model)))
        self.registry = registry or default_registry()
        self.label = label
        self.inputs = [self._input_spec(v, v.name in keep_layout) for v in self.graph.inputs]
        self._out_perm = {o.name: o.name in nhwc_outputs for o in self.graph.outputs}
        self.output_perms: list[tuple[int, ...]] = []
        self.scopes: dict[str, str] = {}  # TF name scope -> ONNX node, filled by each trace

    def _input_spec(self, info, keep: bool) -> IOSpec:
        if info.shape is None or any(d is None or d < 0 for d in info.shape):
            raise Unsupported(f"input {info.name!r} has dynamic dims {info.shape}; run prepare first")
        rank = len(info.shape)
        image = rank == 4 and not keep and info.dtype is not None and info.dtype.kind == "f"
        perm = layout.channels_last(rank) if image else layout.identity(rank)
        return IOSpec(info.name, tuple(layout.tf_shape(perm, info.shape)), str(info.dtype), perm)

    def _handler(self, node: Node):
        return self.registry.lookup(node.domain, node.op_type, self.graph.opset(node.domain))

    def specs(self) -> list[tf.TensorSpec]:
        return [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=f"input_{i}") for i, s in enumerate(self.inputs)]

    def __call__(self, xs: list[tf.Tensor]) -> list[tf.Tensor]:
        ctx = ConversionContext(self.graph)
        for spec, x in zip(self.inputs, xs):
            ctx.set(spec.name, x, spec.perm)
        rejected = self._trace(ctx)
        if rejected:
            raise UnsupportedModel(self.label, rejected, cut=suggest_cut(flow_of_ir(self.graph)))
        outs, self.output_perms = [], []
        for info in self.graph.outputs:
            rank = ctx.value(info.name).rank
            perm = layout.channels_last(rank) if self._out_perm[info.name] else layout.identity(rank)
            self.output_perms.append(perm)
            outs.append(tf.identity(ctx.tensor(info.name, perm)))
        return outs

    def _trace(self, ctx: ConversionContext) -> list[Rejected]:
        rejected: list[Rejected] = []
        poisoned: set[str] = set()
        for node in self.graph.nodes:
            handler = self._handler(node)
            if handler is None:
                # unknown ops are listed even downstream of other failures: the user fixes all at once
                rejected.append(_reject(self.graph, node, _why_unhandled(self.graph, node)))
                poisoned.update(node.outputs)
                continue
            if any(i in poisoned for i in node.inputs if i):
                poisoned.update(node.outputs)
                continue
            try:
                with tf.name_scope(_scope(node)) as scope:
                    self.scopes[scope.rstrip("/")] = node.label
                    handler(ctx, node)
                missing = [o for o in node.outputs if o and not ctx.has(o)]
                if missing:
                    raise Unsupported(f"handler produced no value for {missing}")
            except Unsupported as exc:
                rejected.append(_reject(self.graph, node, exc.reason))
                poisoned.update(node.outputs)
            except (ValueError, tf.errors.OpError) as exc:
                # how TensorFlow refuses an op on the model's tensors (shapes, values): the user's to fix
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                rejected.append(_reject(self.graph, node, f"conversion failed: {reason}"))
                poisoned.update(node.outputs)
            except BuildsysError:
                raise
            except Exception as exc:  # noqa: BLE001 - TypeError, AttributeError...: our bug, not the model's
                raise HandlerBug(node.label, node.op_type, exc) from exc
        return rejected


def _reject(graph: Graph, node: Node, reason: str) -> Rejected:
    return Rejected(node.op_type, node.domain, graph.opset(node.domain), node.label, reason)


def _why_unhandled(graph: Graph, node: Node) -> str:
    if node.domain not in ("", "ai.onnx"):
        return f"custom domain '{node.domain}' is not supported"
    return "no converter for this op" + (" at this opset" if graph.opset(node.domain) < 11 else "")


def _scope(node: Node) -> str:
    # TF scope names allow a narrower alphabet than ONNX node names
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in node.name or node.op_type)
    return cleaned.lstrip("._-") or "node"


def convert_arrays(converter: Converter, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the conversion eagerly on ONNX-layout arrays; outputs in ONNX layout (tests, debugging)."""
    xs = [tf.constant(np.transpose(feeds[s.name], s.perm)) for s in converter.inputs]
    outs = converter(xs)
    return {
        info.name: np.transpose(o.numpy(), layout.inverse(p))
        for info, o, p in zip(converter.graph.outputs, outs, converter.output_perms)
    }
