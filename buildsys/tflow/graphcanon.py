"""Rename and reorder a frozen GraphDef so its bytes depend only on the model.

Tracing names nodes and library functions after Keras name scopes and TF's
process-global uid counter ("functional_3/conv2d_1/...", "while_body_428",
"..._cond_302___redundant_placeholder0"), and emits some nodes in object-id
order. Those differ between two exports in one process, which would defeat the
content-hash cache. Here nodes are put in a structural order (graphorder.py)
and every node, function, function argument and control output is named after
its position; debug info and name-only attributes are dropped.

Pure protobuf manipulation: no graph is executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorflow.core.framework import attr_value_pb2, function_pb2, graph_pb2, node_def_pb2

from buildsys.tflow.graphorder import canonical_order

# Purely informational attributes that can carry the old, counter-bearing names.
# Per-process ids: `_gradient_op_type` ("CustomGradient-<uid>", on the IdentityN
# nodes of Keras swish/silu) made float.pb bytes differ between runs, and a second
# graph with the same id in one process broke its TFLite conversion.
_DROPPED_ATTRS = ("_user_specified_name", "_gradient_op_type")


@dataclass
class _FunctionNames:
    """Old -> new names for one library function's signature."""

    new_name: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)


def canonicalize(
    graph_def: graph_pb2.GraphDef, inputs: list[str], outputs: list[tuple[str, int]], keep_scopes: bool = False
) -> graph_pb2.GraphDef:
    """Return a renamed, reordered copy of `graph_def`.

    `inputs` are the placeholder node names in signature order; they become
    `input_<i>`. `outputs` are (tensor name "node:idx", DataType enum) in
    signature order; an Identity node `output_<j>` is appended for each.
    `keep_scopes` keeps each node's name scope ("scope/Conv2D_7"): only for
    graphs whose scopes are a function of the model (the ONNX converter names
    them after ONNX nodes), so TFLite tensor names lead back to those nodes.
    """
    library = {f.signature.name: f for f in graph_def.library.function}
    functions = {name: _signature_names(f) for name, f in library.items()}
    nodes = _main_order(graph_def, inputs, [t for t, _ in outputs], functions)
    order = _reachable_functions(nodes, library)
    for i, old in enumerate(order):
        functions[old].new_name = f"fn{i}"

    node_map = {name: f"input_{i}" for i, name in enumerate(inputs)}
    node_map.update(
        {
            n.name: _scoped(n.name, keep_scopes) + f"{_op_name(n.op, functions)}_{k}"
            for k, n in enumerate(nodes)
            if n.name not in node_map
        }
    )
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    rename_ref = _main_ref(node_map)
    out.node.extend(_rename_node(n, node_map, functions, rename_ref) for n in nodes)
    _append_outputs(out, outputs, node_map)
    out.library.function.extend(_rename_function(library[old], functions) for old in order)
    return out


def _main_order(graph_def, inputs: list[str], roots: list[str], functions) -> list[node_def_pb2.NodeDef]:
    fixed = {name: f"input_{i}" for i, name in enumerate(inputs)}
    ordered = canonical_order(graph_def.node, roots, _main_resolve, fixed, functions)
    by_name = {n.name: n for n in graph_def.node}
    # Placeholders first and all of them, even an input the outputs ignore.
    return [by_name[name] for name in inputs] + [n for n in ordered if n.name not in fixed]


def _main_resolve(ref: str) -> tuple[str | None, str]:
    name, sep, idx = ref.partition(":")
    return name, (sep + idx if idx and idx != "0" else "")


def _reachable_functions(nodes, library) -> list[str]:
    """Library functions in first-use order (main graph first, then breadth-first)."""
    order: list[str] = []
    queue = [list(nodes)]
    while queue:
        for name in _called_functions(queue.pop(0), library):
            if name not in order:
                order.append(name)
                queue.append(list(library[name].node_def))
    return order


def _called_functions(nodes, library) -> list[str]:
    names: list[str] = []
    for node in nodes:
        if node.op in library:
            names.append(node.op)
        for key in sorted(node.attr):
            names.extend(n for n in _attr_function_names(node.attr[key]) if n in library)
    return names


def _attr_function_names(value: attr_value_pb2.AttrValue) -> list[str]:
    found: list[str] = []
    funcs = [value.func] if value.HasField("func") else list(value.list.func)
    for func in funcs:
        found.append(func.name)
        for key in sorted(func.attr):
            found.extend(_attr_function_names(func.attr[key]))
    return found


def _signature_names(func: function_pb2.FunctionDef) -> _FunctionNames:
    sig = func.signature
    return _FunctionNames(
        inputs={a.name: f"arg{i}" for i, a in enumerate(sig.input_arg)},
        outputs={a.name: f"ret{i}" for i, a in enumerate(sig.output_arg)},
        controls={c: f"ctl{i}" for i, c in enumerate(sig.control_output)},
    )


def _scoped(old: str, keep: bool) -> str:
    scope, sep, _ = old.rpartition("/")
    return scope + sep if keep else ""


def _op_name(op: str, functions) -> str:
    return functions[op].new_name if op in functions else op


def _main_ref(node_map):
    """Renamer for main-graph input strings: "node", "node:idx" or "^node"."""

    def rename(ref: str) -> str:
        if ref.startswith("^"):
            return "^" + node_map[ref[1:]]
        name, sep, idx = ref.partition(":")
        return node_map[name] + sep + idx

    return rename


def _rename_node(node: node_def_pb2.NodeDef, node_map, functions, rename_ref) -> node_def_pb2.NodeDef:
    new = node_def_pb2.NodeDef()
    new.CopyFrom(node)
    new.name = node_map[node.name]
    new.op = _op_name(node.op, functions)
    new.ClearField("experimental_debug_info")
    data = [rename_ref(r) for r in node.input if not r.startswith("^")]
    # Control inputs are a set; list them in a name order that is now canonical.
    control = sorted(rename_ref(r) for r in node.input if r.startswith("^"))
    del new.input[:]
    new.input.extend(data + control)
    for key in list(new.attr):
        if key in _DROPPED_ATTRS:
            del new.attr[key]
        else:
            _rename_attr(new.attr[key], functions, node_map)
    return new


def _rename_attr(value: attr_value_pb2.AttrValue, functions, node_map) -> None:
    funcs = [value.func] if value.HasField("func") else list(value.list.func)
    for func in funcs:
        if func.name in functions:
            func.name = functions[func.name].new_name
        for key in func.attr:
            _rename_attr(func.attr[key], functions, node_map)
    # Colocation hints ("_class": ["loc:@node"]) name other nodes.
    if value.HasField("list") and value.list.s:
        names = [_rename_loc(s, node_map) for s in value.list.s]
        del value.list.s[:]
        value.list.s.extend(names)


def _rename_loc(entry: bytes, node_map) -> bytes:
    text = entry.decode("utf-8", errors="replace")
    if text.startswith("loc:@") and text[5:] in node_map:
        return ("loc:@" + node_map[text[5:]]).encode("utf-8")
    return entry


def _append_outputs(out, outputs: list[tuple[str, int]], node_map) -> None:
    for j, (tensor, dtype) in enumerate(outputs):
        name, _, idx = tensor.partition(":")
        node = out.node.add(name=f"output_{j}", op="Identity")
        node.input.append(node_map[name] + (f":{idx}" if idx and idx != "0" else ""))
        node.attr["T"].type = dtype


def _rename_function(func: function_pb2.FunctionDef, functions) -> function_pb2.FunctionDef:
    names = functions[func.signature.name]
    resolve = _function_resolve(func, names, functions)
    roots = [func.ret[a.name] for a in func.signature.output_arg]
    roots += ["^" + func.control_ret[c] for c in func.signature.control_output if c in func.control_ret]
    nodes = canonical_order(func.node_def, roots, resolve, {}, functions)
    node_map = {n.name: f"{_op_name(n.op, functions)}_{k}" for k, n in enumerate(nodes)}
    rename_ref = _function_ref(node_map, names, resolve)

    new = function_pb2.FunctionDef()
    new.CopyFrom(func)
    _rename_signature(new.signature, names)
    del new.node_def[:]
    new.node_def.extend(_rename_node(n, node_map, functions, rename_ref) for n in nodes)
    new.ClearField("ret")
    for key, ref in func.ret.items():
        new.ret[names.outputs[key]] = rename_ref(ref)
    new.ClearField("control_ret")
    for key, node_name in func.control_ret.items():
        new.control_ret[names.controls[key]] = node_map[node_name]
    for arg in new.arg_attr.values():
        for key in _DROPPED_ATTRS:
            if key in arg.attr:
                del arg.attr[key]
    return new


def _rename_signature(sig, names: _FunctionNames) -> None:
    sig.name = names.new_name
    for arg in sig.input_arg:
        arg.name = names.inputs[arg.name]
    for arg in sig.output_arg:
        arg.name = names.outputs[arg.name]
    controls = [names.controls[c] for c in sig.control_output]
    del sig.control_output[:]
    sig.control_output.extend(controls)


def _function_resolve(func, names: _FunctionNames, functions):
    """Function-body input strings: "arg", "node:out_arg:idx" (canonical out_arg)."""
    ops = {n.name: n.op for n in func.node_def}

    def resolve(ref: str) -> tuple[str | None, str]:
        parts = ref.split(":")
        if len(parts) == 1:
            return None, names.inputs[ref]
        node, out_arg, idx = parts
        callee = functions.get(ops[node])
        return node, f":{callee.outputs[out_arg] if callee else out_arg}:{idx}"

    return resolve


def _function_ref(node_map, names: _FunctionNames, resolve):
    def rename(ref: str) -> str:
        if ref.startswith("^"):
            return "^" + node_map[ref[1:]]
        node, suffix = resolve(ref)
        return suffix if node is None else node_map[node] + suffix

    return rename


def suffix_functions(graph_def: graph_pb2.GraphDef, suffix: str) -> graph_pb2.GraphDef:
    """A copy whose library functions are named `<name>_<suffix>`, calls included.

    Importing a graph registers its functions process-wide by name, and canonical
    names (fn0, fn1, ...) repeat across models: a second model's different `fn0`
    would be refused. A suffix derived from the graph's content keeps names apart."""
    names = {f.signature.name: f"{f.signature.name}_{suffix}" for f in graph_def.library.function}
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph_def)
    if not names:
        return out
    nodes = list(out.node) + [n for f in out.library.function for n in f.node_def]
    for node in nodes:
        node.op = names.get(node.op, node.op)
        for key in node.attr:
            _suffix_attr(node.attr[key], names)
    for func in out.library.function:
        func.signature.name = names[func.signature.name]
    return out


def _suffix_attr(value: attr_value_pb2.AttrValue, names: dict[str, str]) -> None:
    funcs = [value.func] if value.HasField("func") else list(value.list.func)
    for func in funcs:
        func.name = names.get(func.name, func.name)
        for key in func.attr:
            _suffix_attr(func.attr[key], names)
