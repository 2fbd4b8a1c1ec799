"""Learned solvers for the registry-wide tests: weights that fit any grid (tests only).

A learned solver's Δ hold for one grid size; these take Δ = 0.2·e_0 (weight moved onto the newest output) in every
combination, whatever sizes the base plan has, so the solver-wide tests (no host sync, NFE, CUDA graphs, orders) run
them on their own grids through the same reweighting as a learned file's. With the same Δ at every grid size the
error's leading term is systematic: P e_0 has a non-zero first moment, so the global order is 1 (conditions=1); with
conditions=2 the moment is projected out and a quadratic remnant (3 or more outputs) leaves order 2.
"""

from __future__ import annotations

from typing import Any

from diffsolve.solvers.exp.base import Plan
from diffsolve.solvers.exp.coeffs import Node
from diffsolve.solvers.exp.learned import LearnedMultistep, plan_sizes

SPREAD = 0.2


class ShiftedLearned(LearnedMultistep):
    """`base` with Δ = SPREAD·e_0 in every combination of every grid (conditions 1 or 2)."""

    def __init__(self, base: str, options: dict[str, Any] | None = None, conditions: int = 1):
        super().__init__(base, options, None, conditions)
        self.name = f"learned-{self.base.name}" + ("-2" if conditions == 2 else "")

    @property
    def learned(self) -> bool:
        return True

    def compile(self, nodes: list[Node], steps: int, form: str, **options: Any) -> Plan:
        base = LearnedMultistep(self.base, self.learned_options, None, self.conditions)
        deltas = [[SPREAD] + [0.0] * (k - 1) for k in plan_sizes(base.compile(nodes, steps, form, **options))]
        return LearnedMultistep(self.base, self.learned_options, deltas, self.conditions).compile(
            nodes, steps, form, **options)


def examples() -> list[ShiftedLearned]:
    """One learned solver per base family: iPNDM in σ̄, DPM-Solver++(2M) and UniPC (with its corrector) in λ."""
    return [ShiftedLearned("ipndm", {"order": 3}), ShiftedLearned("dpmpp2m"), ShiftedLearned("unipc", conditions=2)]
