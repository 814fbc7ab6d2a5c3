"""The results of a run: metrics per system, ratios, targets, JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Metric", "Results", "percentile"]


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), nearest-rank on sorted data; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Metric:
    """One row of the table: a value per system (None: not run, "n/a": unsupported)."""

    scenario: str
    key: str
    label: str
    unit: str
    # "lower" or "higher": which way is better.
    better: str
    values: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # False for context (CPU use while saturated, load-generator cost): shown in the
    # table, left out of ratios and target verdicts.
    compare: bool = True

    def ratio(self, system: str, baseline: str) -> float | None:
        """``value(system) / value(baseline)`` when both are numbers."""
        a, b = self.values.get(system), self.values.get(baseline)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
            return None
        return a / b

    def beats(self, system: str, baseline: str) -> bool | None:
        r = self.ratio(system, baseline)
        if r is None:
            return None
        return r > 1 if self.better == "higher" else r < 1


class Results:
    """Collects metrics in the order they are first reported."""

    def __init__(self, meta: dict[str, Any], config: dict[str, Any]) -> None:
        self.meta = meta
        self.config = config
        self.metrics: dict[tuple[str, str], Metric] = {}
        self.raw: dict[str, Any] = {}
        self.errors: list[str] = []
        self.timings: dict[str, float] = {}

    def put(
        self,
        scenario: str,
        key: str,
        system: str,
        value: Any,
        *,
        label: str,
        unit: str,
        better: str,
        note: str | None = None,
        compare: bool = True,
    ) -> None:
        metric = self.metrics.get((scenario, key))
        if metric is None:
            metric = self.metrics[(scenario, key)] = Metric(
                scenario, key, label, unit, better, compare=compare
            )
        metric.values[system] = value
        if note:
            metric.notes[system] = note

    def metric(self, scenario: str, key: str) -> Metric | None:
        return self.metrics.get((scenario, key))

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "config": self.config,
            "timings_s": self.timings,
            "errors": self.errors,
            "metrics": [asdict(m) for m in self.metrics.values()],
            "raw": self.raw,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1, default=str))
