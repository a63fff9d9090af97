"""Replay a traffic spike against an HPA rule: replicas over time and the latency they imply.

The parts, each as simple as it can be while keeping what decides the outcome:

* **Traffic**: a base rate, and a spike (``10x`` for ``5m``) reached by a linear ramp.
* **Replicas**: the HPA of :mod:`unmo.deploy.hpa` syncs every 15 s (the controller's
  default period); a pod it adds serves only after ``pod_startup`` (scheduling, image,
  migrate check, state warm-up, readiness); a pod it removes stops taking traffic at once.
* **Metrics pipeline**: the HPA sees Prometheus's last scrape (every ``scrape`` s) of
  ``rate(unmo_records_total[window])`` per pod, i.e. the *served* rate averaged over the
  window; the queue gauge as of that scrape; CPU as metrics-server reports it (the mean
  of the last 15 s, scraped every 15 s).  Served, not offered: a saturated replica reports
  its capacity, which is why the records/s target must sit well below capacity.
* **Latency** per replica, load spread evenly (consistent hashing over many apps): up to
  the highest utilisation rho measured, the p95 is read off the measured curve (linear
  between points: tools/scripts/replica_capacity.py measures it open-loop); above it, it
  grows as an M/M/1 queue's does, ``p95(rho) = p95(rho_m) * (1 - rho_m) / (1 - rho)``
  (Kleinrock, *Queueing Systems* vol. 1, s. 3.2: the M/M/1 sojourn time is exponential
  with mean ``S / (1 - rho)``, so every quantile scales by ``1 / (1 - rho)``), rho capped
  at 0.98.  Without a curve the whole range is M/M/1 from the unloaded p95.  Above capacity
  the excess waits in a fluid backlog (the group-commit queue) and adds
  ``backlog / capacity``; past the server's ``--max-queue`` it is shed with 503 (clients
  retry later).  Group commit makes the measured curve flatter than M/M/1 (bigger flushes
  under load), so the tail above the measured range is the pessimistic part.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from unmo.deploy.hpa import Controller, HpaSpec, Metric, Observation, Policy, Rules

SYNC_S = 15.0            # --horizontal-pod-autoscaler-sync-period default
CPU_WINDOW_S = 15.0      # kubelet/metrics-server resource metrics window and resolution
RHO_CAP = 0.98
RECORDS_METRIC = "unmo_records_per_second"
QUEUE_METRIC = "unmo_queue_records"

# The HPA shipped in deploy/k8s/ingest-hpa.yaml (a test keeps the two equal), so that the
# simulator answers for the manifest without needing a YAML reader at run time.
SHIPPED_HPA = HpaSpec(
    min_replicas=2,
    max_replicas=20,
    metrics=(
        Metric("cpu", "Resource", 70.0),
        Metric(RECORDS_METRIC, "Pods", 8_000.0),
        Metric(QUEUE_METRIC, "Pods", 20_000.0),
    ),
    up=Rules(0, (Policy("Percent", 100, 30), Policy("Pods", 4, 30)), "Max"),
    down=Rules(300, (Policy("Percent", 25, 60),), "Max"),
)


@dataclass
class Workload:
    base: float                  # events/s before and after the spike
    spike_factor: float = 10.0   # multiple of base at the top
    spike_at_s: float = 120.0
    ramp_s: float = 30.0
    spike_s: float = 300.0       # time at the top

    def rate(self, t: float) -> float:
        top = self.base * self.spike_factor
        start, full = self.spike_at_s, self.spike_at_s + self.ramp_s
        end = full + self.spike_s
        if t < start or t >= end + self.ramp_s:
            return self.base
        if t < full:
            return self.base + (top - self.base) * (t - start) / self.ramp_s
        if t < end:
            return top
        return top - (top - self.base) * (t - end) / self.ramp_s


@dataclass
class Replica:
    """Measured figures of one `unmo serve` (docs/deploy.md, "Sizing")."""

    capacity: float                  # events/s at saturation, batches of 1000
    p95_unloaded_ms: float           # p95 of a 1000-record batch at low load
    cpu_ms_per_1000: float           # server CPU per 1000 records
    cpu_request_cores: float         # the Deployment's cpu request
    max_queue: float = 200_000.0     # records waiting before the server sheds (unmo serve --max-queue)
    idle_cores: float = 0.01
    # measured (utilisation, p95 ms) points, ascending; empty: M/M/1 from p95_unloaded_ms
    curve: tuple[tuple[float, float], ...] = ()


@dataclass
class Config:
    hpa: HpaSpec
    replica: Replica
    workload: Workload
    duration_s: float = 1800.0
    pod_startup_s: float = 30.0
    scrape_s: float = 15.0
    rate_window_s: float = 60.0
    start_replicas: int | None = None
    slo_p95_ms: float = 100.0
    sample_s: float = 15.0
    step_s: float = 1.0


@dataclass
class Sample:
    t: float
    offered: float
    replicas: int
    ready: int
    utilization: float
    queue_per_pod: float
    p95_ms: float
    shed_per_s: float

    def to_json(self) -> dict[str, Any]:
        return {"t_s": round(self.t, 1), "offered_per_s": round(self.offered), "replicas": self.replicas,
                "ready": self.ready, "utilization": round(self.utilization, 3),
                "queue_per_pod": round(self.queue_per_pod), "p95_ms": round(self.p95_ms, 1),
                "shed_per_s": round(self.shed_per_s)}


@dataclass
class Result:
    config: Config
    samples: list[Sample] = field(default_factory=list)
    peak_replicas: int = 0
    final_replicas: int = 0
    max_p95_ms: float = 0.0
    p95_over_slo_s: float = 0.0
    shed_records: float = 0.0
    offered_records: float = 0.0
    first_scale_up_s: float | None = None
    back_to_start_s: float | None = None
    replica_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "model": ("HPA (autoscaling/v2 algorithm); p95 from the measured curve, M/M/1 scaling above it, "
                      "fluid backlog above capacity"),
            "latency_curve": [list(p) for p in c.replica.curve],
            "capacity_per_replica": c.replica.capacity,
            "p95_unloaded_ms": c.replica.p95_unloaded_ms,
            "pod_startup_s": c.pod_startup_s,
            "workload": {"base_per_s": c.workload.base, "spike_factor": c.workload.spike_factor,
                         "spike_at_s": c.workload.spike_at_s, "ramp_s": c.workload.ramp_s,
                         "spike_s": c.workload.spike_s},
            "hpa": c.hpa.to_json(),
            "peak_replicas": self.peak_replicas,
            "final_replicas": self.final_replicas,
            "max_p95_ms": round(self.max_p95_ms, 1),
            "slo_p95_ms": c.slo_p95_ms,
            "p95_over_slo_s": round(self.p95_over_slo_s, 1),
            "shed_records": round(self.shed_records),
            "shed_share": round(self.shed_records / self.offered_records, 6) if self.offered_records else 0.0,
            "first_scale_up_s": self.first_scale_up_s,
            "back_to_start_s": self.back_to_start_s,
            "replica_hours": round(self.replica_seconds / 3600, 3),
            "timeline": [s.to_json() for s in self.samples],
        }


def replicas_needed(rate: float, replica: Replica, hpa: HpaSpec) -> int:
    """The replica count the HPA settles at for a steady ``rate`` (where no metric asks for more)."""
    n = hpa.min_replicas
    while n < hpa.max_replicas:
        per_pod = rate / n
        over = False
        for m in hpa.metrics:
            value = _steady_value(m, per_pod, replica)
            if value / m.target > 1.0 + 0.1:
                over = True
        if not over:
            break
        n += 1
    return n


def _steady_value(m: Metric, per_pod: float, replica: Replica) -> float:
    served = min(per_pod, replica.capacity)
    if m.kind == "Resource":
        return _cpu_percent(served, replica)
    if m.name == RECORDS_METRIC:
        return served
    return 0.0 if per_pod < replica.capacity else replica.max_queue


def _cpu_percent(served_per_s: float, replica: Replica) -> float:
    cores = replica.idle_cores + served_per_s * replica.cpu_ms_per_1000 / 1e6
    return 100.0 * cores / replica.cpu_request_cores


def p95_ms(rho: float, backlog_per_pod: float, replica: Replica) -> float:
    """The latency model: the measured curve, M/M/1 above it, plus the wait behind a backlog."""
    rho = min(max(rho, 0.0), RHO_CAP)
    wait = 1000.0 * backlog_per_pod / replica.capacity
    points = replica.curve
    if not points:
        return replica.p95_unloaded_ms / (1.0 - rho) + wait
    if rho <= points[0][0]:
        return points[0][1] + wait
    for (r0, p0), (r1, p1) in itertools.pairwise(points):
        if rho <= r1:
            return p0 + (p1 - p0) * (rho - r0) / (r1 - r0) + wait
    last_rho, last_p95 = points[-1]
    return last_p95 * (1.0 - last_rho) / (1.0 - rho) + wait


def simulate(cfg: Config) -> Result:
    """Run the spike through the HPA and the queueing model; one step per ``cfg.step_s``."""
    hpa, rep, wl = cfg.hpa, cfg.replica, cfg.workload
    ctl = Controller(hpa)
    start = cfg.start_replicas or replicas_needed(wl.base, rep, hpa)
    ready_at: list[float] = [-math.inf] * start     # per pod: when it serves
    spec_replicas = start
    backlog = 0.0                                   # records waiting, all replicas together
    # per step: (t, served per ready pod, backlog per ready pod); enough for the longest window
    keep = int((max(cfg.rate_window_s, CPU_WINDOW_S) + 2 * max(cfg.scrape_s, SYNC_S)) / cfg.step_s) + 2
    history: deque[tuple[float, float, float]] = deque(maxlen=keep)
    result = Result(cfg)
    next_sync, next_sample = SYNC_S, 0.0
    steps = int(cfg.duration_s / cfg.step_s)
    for i in range(steps + 1):
        t = i * cfg.step_s
        offered = wl.rate(t)
        ready = sum(1 for r in ready_at if r <= t)
        capacity = ready * rep.capacity
        arriving = offered * cfg.step_s
        can_serve = capacity * cfg.step_s
        served = min(backlog + arriving, can_serve)
        backlog = backlog + arriving - served
        limit = ready * rep.max_queue
        shed = max(0.0, backlog - limit)
        backlog -= shed
        per_pod_served = served / cfg.step_s / ready if ready else 0.0
        per_pod_backlog = backlog / ready if ready else backlog
        history.append((t, per_pod_served, per_pod_backlog))
        rho = offered / capacity if capacity else 1.0
        latency = p95_ms(rho, per_pod_backlog, rep) if ready else math.inf
        result.offered_records += arriving
        result.shed_records += shed
        result.replica_seconds += len(ready_at) * cfg.step_s
        result.max_p95_ms = max(result.max_p95_ms, latency)
        if latency > cfg.slo_p95_ms:
            result.p95_over_slo_s += cfg.step_s
        if t >= next_sample - 1e-9:
            result.samples.append(Sample(t, offered, spec_replicas, ready, min(rho, 9.99), per_pod_backlog,
                                         latency, shed / cfg.step_s))
            next_sample += cfg.sample_s
        if t >= next_sync - 1e-9:
            next_sync += SYNC_S
            observations = _observe(cfg, history, t, ready, len(ready_at) - ready)
            new = ctl.decide(t, spec_replicas, observations)
            if new > spec_replicas:
                ready_at.extend([t + cfg.pod_startup_s] * (new - spec_replicas))
                if result.first_scale_up_s is None:
                    result.first_scale_up_s = t
            elif new < spec_replicas:
                # the newest pods go first (ReplicaSet prefers not-ready and younger pods)
                ready_at.sort()
                del ready_at[new:]
            if (new <= start and result.back_to_start_s is None and result.first_scale_up_s is not None
                    and t > wl.spike_at_s):
                result.back_to_start_s = t
            spec_replicas = new
        result.peak_replicas = max(result.peak_replicas, spec_replicas)
    result.final_replicas = spec_replicas
    return result


def _window_mean(history: deque[tuple[float, float, float]], end: float, length: float, column: int) -> float:
    values = [h[column] for h in history if end - length < h[0] <= end]
    return sum(values) / len(values) if values else 0.0


def _observe(cfg: Config, history: deque[tuple[float, float, float]], now: float, ready: int,
             unready: int) -> list[Observation]:
    """What the HPA reads at ``now``: the last scrape of each metric (all ready pods alike)."""
    last_scrape = math.floor(now / cfg.scrape_s) * cfg.scrape_s
    last_cpu = math.floor(now / CPU_WINDOW_S) * CPU_WINDOW_S
    out = []
    for m in cfg.hpa.metrics:
        if m.kind == "Resource":
            value = _cpu_percent(_window_mean(history, last_cpu, CPU_WINDOW_S, 1), cfg.replica)
        elif m.name == RECORDS_METRIC:
            value = _window_mean(history, last_scrape, cfg.rate_window_s, 1)
        elif m.name == QUEUE_METRIC:
            value = _window_mean(history, last_scrape, cfg.step_s, 2)
        else:
            raise ValueError(f"metric {m.name!r}: the simulator knows cpu, {RECORDS_METRIC} and {QUEUE_METRIC}")
        out.append(Observation(m, [value] * ready, unready))
    return out
