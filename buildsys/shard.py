"""`build --shard i/n`: a stable share of the targets, so n CI jobs split one build.

The unit is a whole recipe when there are at least n recipes (its common stages
then run once in all), else a single target (its recipe's common stages run in
every shard that has one of its targets, and the remote cache dedups the rest).
Units go to shards longest first, each to the least loaded shard, weighted by
the stage times the remote cache kept from earlier builds; with no times every
stage weighs the same. Ties break by name, so every job of the matrix computes
the same split without talking to the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from buildsys.errors import UsageError
from buildsys.plan import Plan, RecipePlan
from buildsys.stages import Stage


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as CI matrices count
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UsageError(f"--shard '{text}' is not i/n with 1 <= i <= n", hint="e.g. --shard 1/4 ... --shard 4/4")
    return Shard(int(match.group(1)), int(match.group(2)))


@dataclass
class Unit:
    name: str
    recipe: str
    target: str | None  # None: the whole recipe
    weight: float


def shard_plan(plan: Plan, shard: Shard, times: dict[str, float]) -> Plan:
    """The part of `plan` that shard `shard` builds."""
    units = _units(plan.recipes, shard.count, _weigher(times))
    mine = {(u.recipe, u.target) for u in assign(units, shard.count)[shard.index - 1]}
    kept = [_part(rp, mine) for rp in plan.recipes]
    return Plan(env=plan.env, recipes=[rp for rp in kept if rp.stages])


def assign(units: list[Unit], count: int) -> list[list[Unit]]:
    shards: list[list[Unit]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for unit in sorted(units, key=lambda u: (-u.weight, u.name)):
        slot = min(range(count), key=lambda i: (loads[i], i))
        shards[slot].append(unit)
        loads[slot] += unit.weight
    return shards


def _weigher(times: dict[str, float]):
    known = [t for t in times.values() if t > 0]
    default = sum(known) / len(known) if known else 1.0

    def weight(stages: list[Stage]) -> float:
        return sum(times.get(s.task_name, default) for s in stages)

    return weight


def _units(recipes: list[RecipePlan], count: int, weight) -> list[Unit]:
    if len(recipes) >= count:
        return [Unit(rp.recipe.name, rp.recipe.name, None, weight(rp.stages)) for rp in recipes]
    units = []
    for rp in recipes:
        common = [s for s in rp.stages if s.target_name is None]
        for target in rp.recipe.targets:
            own = [s for s in rp.stages if s.target_name == target.name]
            share = weight(common) / max(len(rp.recipe.targets), 1)
            units.append(Unit(f"{rp.recipe.name}/{target.name}", rp.recipe.name, target.name, weight(own) + share))
    return units


def _part(rp: RecipePlan, mine: set[tuple[str, str | None]]) -> RecipePlan:
    name = rp.recipe.name
    if (name, None) in mine:
        return rp
    targets = {t for r, t in mine if r == name}
    if not targets:
        return RecipePlan(rp.recipe, [])
    return RecipePlan(rp.recipe, [s for s in rp.stages if s.target_name is None or s.target_name in targets])
