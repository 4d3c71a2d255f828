"""Op handlers keyed by (domain, op_type, since_version).

`@handles("Conv", since=11)` only tags the function; a `Registry` is built from
the op modules listed in `ops.MODULES`, so there is no global table to mutate.
A node is converted by the handler with the largest since_version <= the
model's opset for that domain.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from types import ModuleType

Handler = Callable[..., None]
TAG = "_onnx_ops"


def handles(op_type: str, since: int = 1, domain: str = "") -> Callable[[Handler], Handler]:
    def tag(fn: Handler) -> Handler:
        tags = getattr(fn, TAG, ())
        if (domain, op_type, since) in tags:
            raise ValueError(f"{_name(fn)} is tagged twice as the handler of {_label(domain, op_type, since)}")
        earlier = [v for d, op, v in tags if (d, op) == (domain, op_type)]
        if earlier:
            # a later opset falls to the lowest tag anyway: more tags only look like version splits
            versions = ", ".join(str(v) for v in sorted([*earlier, since]))
            raise ValueError(
                f"{_name(fn)} is tagged for {op_type} at opsets {versions}: "
                "tag it once, at the lowest version it converts"
            )
        setattr(fn, TAG, tags + ((domain, op_type, since),))
        return fn

    return tag


class Registry:
    def __init__(self, modules: Iterable[ModuleType]):
        table: dict[tuple[str, str], dict[int, Handler]] = {}
        for module in modules:
            for fn in vars(module).values():
                for domain, op_type, since in getattr(fn, TAG, ()):
                    versions = table.setdefault((domain, op_type), {})
                    # a handler imported into another op module is the same claim, seen twice
                    if versions.get(since, fn) is not fn:
                        raise ValueError(
                            f"{_label(domain, op_type, since)} is claimed by both "
                            f"{_name(versions[since])} and {_name(fn)}: which one converts it would "
                            "depend on module order"
                        )
                    versions[since] = fn
        self._table = {key: sorted(v.items()) for key, v in table.items()}

    def lookup(self, domain: str, op_type: str, opset: int) -> Handler | None:
        versions = self._table.get((_domain(domain), op_type))
        if not versions:
            return None
        i = bisect.bisect_right([v for v, _ in versions], opset)
        return versions[i - 1][1] if i else None

    def ops(self) -> list[tuple[str, str, int]]:
        """(domain, op_type, lowest since_version) for every claimed op."""
        return sorted((d, op, v[0][0]) for (d, op), v in self._table.items())


def _label(domain: str, op_type: str, since: int) -> str:
    return f"{domain or 'ai.onnx'} {op_type} (since opset {since})"


def _name(fn: Handler) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def default_registry() -> Registry:
    from buildsys.converter.ops import MODULES

    return Registry(MODULES)
