"""`unmo autoscale-sim`: the HPA algorithm against the Kubernetes documentation's own
examples, the simulation's behaviour around a spike, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from tests.support import ROOT
from unmo.deploy.autoscale import (
    QUEUE_METRIC,
    RECORDS_METRIC,
    SHIPPED_HPA,
    Config,
    Replica,
    Workload,
    p95_ms,
    replicas_needed,
    simulate,
)
from unmo.deploy.cli import (
    MEASURED_CAPACITY,
    MEASURED_CPU_MS_PER_1000,
    MEASURED_CURVE,
    SHIPPED_CPU_REQUEST,
    _curve,
)
from unmo.deploy.hpa import (
    DEFAULT_DOWN,
    DEFAULT_UP,
    Controller,
    HpaSpec,
    Metric,
    Observation,
    Policy,
    Rules,
    replicas_for_metric,
)

CPU = Metric("cpu", "Resource", 50.0)
RATE = Metric(RECORDS_METRIC, "Pods", 1000.0)


def test_replica_formula_and_tolerance() -> None:
    # "if the current metric value is 200m, and the desired value is 100m, the number of
    # replicas will be doubled" (Kubernetes docs, Algorithm details)
    assert replicas_for_metric(Observation(RATE, [2000.0] * 3), current=3) == 6
    assert replicas_for_metric(Observation(RATE, [500.0] * 4), current=4) == 2
    # within the 10 % tolerance nothing changes
    assert replicas_for_metric(Observation(RATE, [1090.0] * 5), current=5) == 5
    assert replicas_for_metric(Observation(RATE, [1110.0] * 5), current=5) == 6
    # scaling up while pods are starting: they count as using nothing
    assert replicas_for_metric(Observation(RATE, [1500.0] * 2, unready=2), current=4) == 4
    assert replicas_for_metric(Observation(RATE, [3000.0] * 2, unready=2), current=4) == 6


def test_scale_down_policy_example_from_the_docs() -> None:
    # Kubernetes docs, "Scaling Policies": Pods 4 / 60 s and Percent 10 / 60 s, 80 replicas
    # scaled towards 10: the first step removes 8, the next (72 replicas) 7.2 rounded up to 8.
    spec = HpaSpec(1, 100, (RATE,), up=DEFAULT_UP,
                   down=Rules(0, (Policy("Pods", 4, 60), Policy("Percent", 10, 60)), "Max"))
    ctl = Controller(spec)
    low = [Observation(RATE, [125.0] * 80)]  # asks for 10
    assert ctl.decide(0, 80, low) == 72
    assert ctl.decide(15, 72, [Observation(RATE, [138.0] * 72)]) == 72  # same period: no more
    assert ctl.decide(61, 72, [Observation(RATE, [138.0] * 72)]) == 64
    # selectPolicy Min: the policy allowing the smallest change (4 pods) wins
    ctl = Controller(replace(spec, down=replace(spec.down, select="Min")))
    assert ctl.decide(0, 80, low) == 76


def test_stabilization_window_holds_the_highest_recent_recommendation() -> None:
    spec = HpaSpec(2, 20, (RATE,), up=DEFAULT_UP, down=DEFAULT_DOWN)  # 300 s down window
    ctl = Controller(spec)
    assert ctl.decide(0, 10, [Observation(RATE, [1000.0] * 10)]) == 10
    for t in range(15, 300, 15):  # load gone, but the window remembers the 10
        assert ctl.decide(t, 10, [Observation(RATE, [100.0] * 10)]) == 10
    assert ctl.decide(315, 10, [Observation(RATE, [100.0] * 10)]) == 2


def test_scale_up_policies_bound_each_period() -> None:
    spec = SHIPPED_HPA  # double or +4 every 30 s, whichever is more
    ctl = Controller(spec)
    hot = [Observation(Metric(RECORDS_METRIC, "Pods", 10_000.0), [100_000.0] * 2)]
    assert ctl.decide(0, 2, hot) == 6            # max(2 * 2, 2 + 4)
    assert ctl.decide(15, 6, hot) == 6           # same 30 s period
    assert ctl.decide(31, 6, hot) == 12          # max(6 * 2, 6 + 4)
    assert ctl.decide(62, 12, hot) == spec.max_replicas
    off = Controller(replace(spec, up=replace(spec.up, select="Disabled")))
    assert off.decide(0, 2, hot) == 2


def test_hpa_reads_kubectl_json_and_rejects_other_kinds() -> None:
    doc = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "spec": {"maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {
               "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}
    spec = HpaSpec.from_manifest(doc)
    assert spec.min_replicas == 1 and spec.up == DEFAULT_UP and spec.down == DEFAULT_DOWN
    from unmo.errors import ConfigError

    with pytest.raises(ConfigError, match="HorizontalPodAutoscaler"):
        HpaSpec.from_manifest({**doc, "apiVersion": "autoscaling/v1"})


MEASURED = Replica(capacity=MEASURED_CAPACITY, p95_unloaded_ms=60.0, cpu_ms_per_1000=MEASURED_CPU_MS_PER_1000,
                   cpu_request_cores=SHIPPED_CPU_REQUEST)


def test_latency_model_follows_the_curve_then_mm1() -> None:
    rep = replace(MEASURED, curve=((0.1, 100.0), (0.5, 60.0)))
    assert p95_ms(0.05, 0, rep) == 100.0
    assert p95_ms(0.3, 0, rep) == pytest.approx(80.0)
    assert p95_ms(0.75, 0, rep) == pytest.approx(60.0 * 0.5 / 0.25)
    assert p95_ms(0.5, rep.capacity, rep) == pytest.approx(60.0 + 1000.0)  # a second of backlog
    mm1 = replace(MEASURED, curve=())
    assert p95_ms(0.9, 0, mm1) == pytest.approx(600.0)


def test_steady_load_stays_put() -> None:
    wl = Workload(base=MEASURED_CAPACITY, spike_factor=1.0)
    res = simulate(Config(SHIPPED_HPA, MEASURED, wl, duration_s=900))
    assert res.peak_replicas == res.final_replicas == replicas_needed(wl.base, MEASURED, SHIPPED_HPA)
    assert res.shed_records == 0


def test_spike_scales_out_then_back_in_after_the_window() -> None:
    base = SHIPPED_HPA.min_replicas * MEASURED_CAPACITY * 0.4
    wl = Workload(base=base, spike_factor=5.0, spike_at_s=120, ramp_s=30, spike_s=600)
    res = simulate(Config(SHIPPED_HPA, MEASURED, wl, duration_s=2400, slo_p95_ms=150))
    out = res.to_json()
    start = out["timeline"][0]["replicas"]
    top = replicas_needed(base * 5, MEASURED, SHIPPED_HPA)
    assert res.first_scale_up_s is not None and res.first_scale_up_s <= 120 + 30 + 60
    assert res.peak_replicas >= top
    # at the top of the spike, once the new pods are ready, latency is back under control
    settled = [s for s in out["timeline"] if 120 + 30 + 240 <= s["t_s"] <= 120 + 30 + 600]
    assert settled and max(s["p95_ms"] for s in settled) < 150
    # not scaled in during the spike, nor within the 300 s window after it
    end = 120 + 30 + 600
    assert all(s["replicas"] >= top for s in out["timeline"] if 400 <= s["t_s"] <= end + 300)
    assert res.final_replicas == start and res.back_to_start_s is not None and res.back_to_start_s > end + 300


def test_records_target_at_capacity_never_asks_for_more() -> None:
    # A saturated replica reports what it serves, its capacity, not what is offered: with the
    # records/s target at capacity the ratio never exceeds 1 and the HPA does not move, while
    # the shipped 60 % target keeps asking.  This is why the target sits below capacity.
    wl = Workload(base=MEASURED_CAPACITY, spike_factor=4.0, spike_at_s=60, ramp_s=10, spike_s=600)
    only_rate = HpaSpec(2, 20, (Metric(RECORDS_METRIC, "Pods", MEASURED_CAPACITY),))
    stuck = simulate(Config(only_rate, MEASURED, wl, duration_s=900))
    assert stuck.peak_replicas == 2 and stuck.shed_records > 0
    shipped_rate = [m for m in SHIPPED_HPA.metrics if m.name == RECORDS_METRIC]
    moving = simulate(Config(HpaSpec(2, 20, tuple(shipped_rate)), MEASURED, wl, duration_s=900))
    assert moving.peak_replicas >= replicas_needed(wl.base * 4, MEASURED, SHIPPED_HPA)


def test_shipped_rule_absorbs_a_10x_spike_from_min_replicas() -> None:
    # The manifest's numbers, the measured replica: a 10x spike from a load two replicas
    # carry comfortably.  Shedding is bounded to the first minute (pods take 30 s to start).
    target = next(m for m in SHIPPED_HPA.metrics if m.name == RECORDS_METRIC).target
    wl = Workload(base=SHIPPED_HPA.min_replicas * target * 0.5, spike_factor=10.0, spike_at_s=120, ramp_s=30,
                  spike_s=300)
    res = simulate(Config(SHIPPED_HPA, replace(MEASURED, curve=_curve(MEASURED_CURVE)), wl, duration_s=1800))
    assert res.shed_records / res.offered_records < 0.05
    assert res.peak_replicas <= SHIPPED_HPA.max_replicas
    assert {m.name for m in SHIPPED_HPA.metrics} == {"cpu", RECORDS_METRIC, QUEUE_METRIC}


def _sim(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "unmo", "autoscale-sim", *flags], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_json_and_manifest_input() -> None:
    r = _sim("--json", "--duration", "15m", "--sample", "1m")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("peak_replicas", "final_replicas", "max_p95_ms", "p95_over_slo_s", "shed_records", "timeline",
                "capacity_per_replica", "hpa", "model", "first_scale_up_s", "replica_hours"):
        assert key in out, key
    assert len(out["timeline"]) == 16
    from_file = _sim("--json", "--duration", "15m", "--sample", "1m", "--hpa", str(ROOT / "deploy/k8s/ingest-hpa.yaml"))
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout.strip().splitlines()[-1]) == out
    table = _sim("--duration", "5m", "--sample", "1m")
    assert table.returncode == 0 and "replicas" in table.stdout and "peak_replicas" in table.stdout


@pytest.mark.parametrize(("flags", "words"), [
    (["--spike", "tenfold"], "--spike: expected FACTORx:DURATION"),
    (["--capacity", "0"], "--capacity: expected a number above 0"),
    (["--duration", "1s"], "--duration: expected 60s"),
    (["--latency-curve", "0.5:10,0.2:30"], "--latency-curve: utilisations must increase"),
    (["--hpa", "deploy/k8s/ingest-pdb.yaml"], "expected one HorizontalPodAutoscaler, found 0"),
    (["--hpa", "no/such/file.yaml"], "--hpa: cannot read"),
    (["--start-replicas", "99"], "--start-replicas: expected 2 .. 20"),
])
def test_cli_bad_flags_one_line_exit_2(flags: list[str], words: str) -> None:
    r = _sim(*flags)
    assert r.returncode == 2
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
