"""The Kubernetes HorizontalPodAutoscaler's decision rule (autoscaling/v2), step by step.

Follows the algorithm as the Kubernetes documentation describes it ("Horizontal Pod
Autoscaling", Algorithm details; "Configurable scaling behavior") and as
``pkg/controller/podautoscaler`` implements it:

1. per metric, ``desired = ceil(ready_pods * current / target)``, unless
   ``|current / target - 1| <= tolerance`` (0.1); when scaling up while some pods are
   not ready yet, those count as using nothing and the ratio is recomputed;
2. the largest proposal over the metrics wins;
3. stabilisation: the highest recommendation of the scale-down window and the lowest of
   the scale-up window bound the change;
4. rate policies: each policy allows ``period start replicas + Pods`` or
   ``* (1 + Percent/100)`` within its period; ``selectPolicy`` Max takes the policy
   allowing the largest change, Min the smallest; then min/max replicas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from unmo.errors import ConfigError

TOLERANCE = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance default


@dataclass(frozen=True)
class Policy:
    kind: str           # "Pods" or "Percent"
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    """One direction of spec.behavior (scaleUp or scaleDown)."""

    stabilization_s: int
    policies: tuple[Policy, ...]
    select: str = "Max"  # Max, Min or Disabled


# The defaults the documentation gives for a behavior field that is left out.
DEFAULT_UP = Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)), "Max")
DEFAULT_DOWN = Rules(300, (Policy("Percent", 100, 15),), "Max")


@dataclass(frozen=True)
class Metric:
    """One entry of spec.metrics: a CPU utilisation or a per-pod average value."""

    name: str           # "cpu" or the custom metric's name
    kind: str           # "Resource" or "Pods"
    target: float       # percent of the request for cpu, else the average value per pod


@dataclass(frozen=True)
class HpaSpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[Metric, ...]
    up: Rules = DEFAULT_UP
    down: Rules = DEFAULT_DOWN

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any]) -> HpaSpec:
        """Read an autoscaling/v2 HorizontalPodAutoscaler (the dict of its YAML or JSON)."""
        where = "HorizontalPodAutoscaler"
        if doc.get("apiVersion") != "autoscaling/v2" or doc.get("kind") != "HorizontalPodAutoscaler":
            raise ConfigError(f"{where}: expected apiVersion autoscaling/v2, kind HorizontalPodAutoscaler, got "
                              f"{doc.get('apiVersion')!r}, {doc.get('kind')!r}")
        spec = doc.get("spec") or {}
        metrics = []
        for i, m in enumerate(spec.get("metrics") or []):
            kind = m.get("type")
            if kind == "Resource":
                res = m["resource"]
                if res.get("target", {}).get("type") != "Utilization":
                    raise ConfigError(f"{where}: spec.metrics[{i}]: only Utilization targets are simulated")
                metrics.append(Metric(res["name"], "Resource", float(res["target"]["averageUtilization"])))
            elif kind == "Pods":
                pods = m["pods"]
                metrics.append(Metric(pods["metric"]["name"], "Pods", _quantity(pods["target"]["averageValue"])))
            else:
                raise ConfigError(f"{where}: spec.metrics[{i}].type: expected Resource or Pods, got {kind!r}")
        if not metrics:
            raise ConfigError(f"{where}: spec.metrics: empty")
        behavior = spec.get("behavior") or {}
        return cls(
            min_replicas=int(spec.get("minReplicas", 1)),
            max_replicas=int(spec["maxReplicas"]),
            metrics=tuple(metrics),
            up=_rules(behavior.get("scaleUp"), DEFAULT_UP),
            down=_rules(behavior.get("scaleDown"), DEFAULT_DOWN),
        )

    def to_json(self) -> dict[str, Any]:
        def rules(r: Rules) -> dict[str, Any]:
            return {"stabilization_s": r.stabilization_s, "select": r.select,
                    "policies": [{"type": p.kind, "value": p.value, "period_s": p.period_s} for p in r.policies]}

        return {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "metrics": [{"name": m.name, "type": m.kind, "target": m.target} for m in self.metrics],
                "scale_up": rules(self.up), "scale_down": rules(self.down)}


def _quantity(value: Any) -> float:
    """A Kubernetes quantity as a number: ``12k``, ``12000``, ``500m``."""
    text = str(value).strip()
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def _rules(doc: Mapping[str, Any] | None, default: Rules) -> Rules:
    if not doc:
        return default
    policies = tuple(Policy(p["type"], int(p["value"]), int(p["periodSeconds"]))
                     for p in doc.get("policies") or []) or default.policies
    window = doc.get("stabilizationWindowSeconds")
    return Rules(default.stabilization_s if window is None else int(window), policies,
                 doc.get("selectPolicy", "Max"))


@dataclass
class Observation:
    """What the controller sees of one metric at a sync: the ready pods' values."""

    metric: Metric
    ready_values: list[float]   # per ready pod (percent of request for cpu)
    unready: int = 0            # pods that exist but are not ready (or have no sample yet)


def replicas_for_metric(obs: Observation, current: int, tolerance: float = TOLERANCE) -> int:
    """Step 1: one metric's proposal (replica_calculator.go, GetResourceReplicas/GetMetricReplicas)."""
    ready = len(obs.ready_values)
    if ready == 0:
        return current
    total = sum(obs.ready_values)
    ratio = total / ready / obs.metric.target
    if ratio > 1.0 and obs.unready:
        # Scaling up while pods are starting: count them as using nothing, so that a scale-up
        # already under way is not repeated for the same load.
        ratio = total / (ready + obs.unready) / obs.metric.target
        if ratio <= 1.0 + tolerance:
            return current
        return math.ceil(ratio * (ready + obs.unready))
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(ratio * ready)


@dataclass
class Controller:
    """One HPA's memory between syncs: recommendations and scale events."""

    spec: HpaSpec
    tolerance: float = TOLERANCE
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def decide(self, now: float, current: int, observations: list[Observation]) -> int:
        """The replica count the HPA sets at a sync at ``now`` (seconds)."""
        proposals = [replicas_for_metric(o, current, self.tolerance) for o in observations]
        desired = max(proposals) if proposals else current
        desired = self._stabilize(now, current, desired)
        new = self._rate_limit(now, current, desired)
        if new > current:
            self.up_events.append((now, new - current))
        elif new < current:
            self.down_events.append((now, current - new))
        return new

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cut = now - self.spec.up.stabilization_s
        down_cut = now - self.spec.down.stabilization_s
        up, down = desired, desired
        for t, rec in self.recommendations:
            if t > up_cut:
                up = min(up, rec)
            if t > down_cut:
                down = max(down, rec)
        keep = now - max(self.spec.up.stabilization_s, self.spec.down.stabilization_s)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > keep]
        self.recommendations.append((now, desired))
        out = current
        if out < up:
            out = up
        if out > down:
            out = down
        return out

    def _period_start(self, now: float, current: int, period_s: int) -> int:
        added = sum(n for t, n in self.up_events if t > now - period_s)
        removed = sum(n for t, n in self.down_events if t > now - period_s)
        return current - added + removed

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        spec = self.spec
        if desired > current:
            limit = self._up_limit(now, current)
            return min(desired, max(limit, current), spec.max_replicas)
        if desired < current:
            limit = self._down_limit(now, current)
            return max(desired, min(limit, current), spec.min_replicas)
        return max(spec.min_replicas, min(desired, spec.max_replicas))

    def _up_limit(self, now: float, current: int) -> int:
        rules = self.spec.up
        if rules.select == "Disabled":
            return current
        limits = []
        for p in rules.policies:
            start = self._period_start(now, current, p.period_s)
            limits.append(start + p.value if p.kind == "Pods" else math.ceil(start * (1 + p.value / 100)))
        return min(limits) if rules.select == "Min" else max(limits)

    def _down_limit(self, now: float, current: int) -> int:
        rules = self.spec.down
        if rules.select == "Disabled":
            return current
        limits = []
        for p in rules.policies:
            start = self._period_start(now, current, p.period_s)
            limits.append(start - p.value if p.kind == "Pods" else int(start * (1 - p.value / 100)))
        # Max = the policy allowing the largest change = the fewest replicas
        return max(limits) if rules.select == "Min" else min(limits)
