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
        setattr(fn, TAG, getattr(fn, TAG, ()) + ((domain, op_type, since),))
        return fn

    return tag


class Registry:
    def __init__(self, modules: Iterable[ModuleType]):
        table: dict[tuple[str, str], list[tuple[int, Handler]]] = {}
        for module in modules:
            for fn in vars(module).values():
                for domain, op_type, since in getattr(fn, TAG, ()):
                    table.setdefault((domain, op_type), []).append((since, fn))
        self._table = {key: sorted(v, key=lambda e: e[0]) for key, v in table.items()}

    def lookup(self, domain: str, op_type: str, opset: int) -> Handler | None:
        versions = self._table.get((_domain(domain), op_type))
        if not versions:
            return None
        i = bisect.bisect_right([v for v, _ in versions], opset)
        return versions[i - 1][1] if i else None

    def ops(self) -> list[tuple[str, str, int]]:
        """(domain, op_type, lowest since_version) for every claimed op."""
        return sorted((d, op, v[0][0]) for (d, op), v in self._table.items())


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def default_registry() -> Registry:
    from buildsys.converter.ops import MODULES

    return Registry(MODULES)
