"""Kubernetes manifests, the Prometheus Adapter rules and the Compose file, checked offline.

Schemas: kubernetes-validate ships the Kubernetes OpenAPI schemas per version (strict:
unknown fields fail); check-jsonschema ships the Compose specification's schema.  Beyond
the schemas, the tests check what ties the files together: the probes' paths and the
drain time against the server, the HPA against `unmo autoscale-sim`, the adapter's metric
names against what a real server exports, every setting against the code that reads it.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support import ROOT, now_ms, post_batch
from unmo.deploy.autoscale import QUEUE_METRIC, RECORDS_METRIC, SHIPPED_HPA
from unmo.deploy.cli import SHIPPED_CPU_REQUEST
from unmo.deploy.hpa import HpaSpec
from unmo.server.run import GRACEFUL_S

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# the oldest Kubernetes minor still in the providers' support windows, and the newest schema shipped
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schemas(path: Path) -> None:
    for doc in load_all(path):
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_mistakes() -> None:
    deployment = copy.deepcopy(k8s_objects()[("Deployment", "unmo-ingest")])
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")  # a typo kubectl would reject
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    hpa = copy.deepcopy(k8s_objects()[("HorizontalPodAutoscaler", "unmo-ingest")])
    hpa["spec"]["metrics"][0]["resource"]["target"]["type"] = 70
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_and_file() -> None:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    for r in listed:
        assert (DEPLOY / r).is_file(), r
    shipped = {f"k8s/{p.name}" for p in K8S.glob("*.yaml")}
    # the example Secret is never applied from the repository
    assert listed == shipped - {"k8s/secret.example.yaml"}
    for gen in kust["configMapGenerator"]:
        for f in gen["files"]:
            assert (DEPLOY / f).is_file(), f
    lb = k8s_objects()[("Deployment", "unmo-lb")]
    generated = {Path(f).name for g in kust["configMapGenerator"] for f in g["files"]}
    mounted = {m["subPath"] for m in container(lb)["volumeMounts"]}
    assert mounted == generated


def test_ingest_deployment_probes_drain_and_resources() -> None:
    objs = k8s_objects()
    dep = objs[("Deployment", "unmo-ingest")]
    spec = dep["spec"]["template"]["spec"]
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    c = container(dep)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # the grace period covers the endpoint-removal sleep and the server's whole drain
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + GRACEFUL_S + 5
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    assert _cores(c["resources"]["requests"]["cpu"]) == SHIPPED_CPU_REQUEST
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 10001
    assert c["ports"][0]["containerPort"] == 8080
    pdb = objs[("PodDisruptionBudget", "unmo-ingest")]
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    for name in ("unmo-ingest", "unmo-ingest-pods"):
        assert objs[("Service", name)]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert objs[("Service", "unmo-ingest-pods")]["spec"]["clusterIP"] == "None"


def _cores(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_container_commands_are_real_unmo_commands() -> None:
    from unmo.cli import build_parser

    parser = build_parser()
    objs = k8s_objects()
    commands = [container(objs[("Deployment", n)])["args"] for n in ("unmo-ingest", "unmo-tracker")]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("migrate", "ingest", "tracker"):
        commands.append(compose["services"][name]["command"])
    for argv in commands:
        parser.parse_args(argv)  # raises UsageError on an unknown command or flag
    tracker = container(objs[("Deployment", "unmo-tracker")])
    assert tracker["ports"][0]["containerPort"] == 8084 and "8084" in tracker["args"]


def _settings_read_by_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "unmo").rglob("*.py"):
        names.update(re.findall(r"\"(UNMO_[A-Z_]+)\"", path.read_text()))
    return names


def test_every_setting_is_one_the_code_reads() -> None:
    known = _settings_read_by_code()
    objs = k8s_objects()
    used = set(objs[("ConfigMap", "unmo-config")]["data"]) | set(objs[("Secret", "unmo-secrets")]["stringData"])
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for svc in ("migrate", "ingest", "tracker"):
        used |= set(compose["services"][svc]["environment"])
    for c in (container(objs[("Deployment", n)]) for n in ("unmo-ingest", "unmo-tracker")):
        used |= {e["name"] for e in c.get("env", [])}
    unknown = {u for u in used if u.startswith("UNMO_")} - known
    assert not unknown, f"settings no code reads: {sorted(unknown)}"
    # and the ones the image sets
    image_env = re.findall(r"\b(UNMO_[A-Z_]+)=", (ROOT / "Dockerfile").read_text())
    assert set(image_env) <= known


def test_hpa_is_what_autoscale_sim_simulates() -> None:
    hpa = k8s_objects()[("HorizontalPodAutoscaler", "unmo-ingest")]
    assert HpaSpec.from_manifest(hpa) == SHIPPED_HPA
    assert hpa["spec"]["scaleTargetRef"]["name"] == "unmo-ingest"
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}


def _adapter_rules() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cm = load_all(K8S / "prometheus-adapter" / "rules.yaml")[0]
    from_cm = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    return from_cm, values["rules"]["custom"]


def test_adapter_rules_serve_the_hpa_metrics() -> None:
    rules, helm = _adapter_rules()
    assert rules == helm
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(load_all(K8S / "prometheus-adapter" / "rules.yaml")[0], version, strict=True)
    served = {r["name"]["as"] for r in rules}
    hpa = k8s_objects()[("HorizontalPodAutoscaler", "unmo-ingest")]
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert wanted == served == {RECORDS_METRIC, QUEUE_METRIC}
    for r in rules:
        assert set(r["resources"]["overrides"]) == {"namespace", "pod"}
        assert "<<.Series>>" in r["metricsQuery"] and "<<.GroupBy>>" in r["metricsQuery"]
    monitor = load_all(K8S / "prometheus-adapter" / "podmonitor.yaml")[0]
    dep = k8s_objects()[("Deployment", "unmo-ingest")]
    assert monitor["spec"]["selector"] == dep["spec"]["selector"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == container(dep)["ports"][0]["name"]


def test_adapter_series_exist_on_a_real_server(server, app) -> None:
    # The rules' series must be what /metrics really exports (a renamed metric would leave
    # the HPA without data, silently).
    r = post_batch(server.url, app["sdk_key"], [{"type": "open", "id": "o-metrics", "ts": now_ms(),
                                                  "device": {"idfv": "5E11E5"}}])
    assert r.status_code == 200, r.text
    import httpx

    exported = set(re.findall(r"^([a-z_]+)(?:\{|\s)", httpx.get(server.url + "/metrics", timeout=10).text, re.M))
    rules, _ = _adapter_rules()
    for rule in rules:
        series = re.match(r"([a-z_]+)\{", rule["seriesQuery"])
        assert series and series.group(1) in exported, rule["seriesQuery"]


def test_compose_file_follows_the_compose_spec() -> None:
    schema_text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(schema_text.read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    broken = copy.deepcopy(compose)
    broken["services"]["ingest"]["deploy"]["replica"] = 2  # a typo Compose would reject
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_wires_replicas_balancer_and_tracker() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    s = compose["services"]
    assert set(s) == {"postgres", "migrate", "ingest", "tracker", "lb"}
    assert s["ingest"]["deploy"]["replicas"] >= 2
    assert s["ingest"]["build"]["context"] == ".." and (DEPLOY / ".." / s["ingest"]["build"]["dockerfile"]).is_file()
    # the balancer's upstream template gets every variable it uses, in Compose and in Kubernetes
    template = (DEPLOY / "nginx" / "unmo-upstream.inc.template").read_text()
    variables = set(re.findall(r"\$\{(\w+)\}", template))
    assert variables == {"UNMO_UPSTREAM", "NGINX_LOCAL_RESOLVERS"}
    lb_env = s["lb"]["environment"]
    assert lb_env["NGINX_ENTRYPOINT_LOCAL_RESOLVERS"] == "1" and lb_env["UNMO_UPSTREAM"] == "ingest:8080"
    k8s_lb_env = {e["name"]: e["value"] for e in container(k8s_objects()[("Deployment", "unmo-lb")])["env"]}
    assert k8s_lb_env["NGINX_ENTRYPOINT_LOCAL_RESOLVERS"] == "1"
    assert k8s_lb_env["UNMO_UPSTREAM"].startswith("unmo-ingest-pods.unmo.svc")
    for volume in s["lb"]["volumes"]:
        source = volume.split(":")[0]
        assert (DEPLOY / source).is_file(), source
    assert any(p.endswith(":8084:8084") for p in s["tracker"]["ports"])
    # secrets come from deploy/.env, never from defaults in the file
    text = (DEPLOY / "compose.yaml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${UNMO_ADMIN_TOKEN:?" in text
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()
    example = (DEPLOY / ".env.example").read_text()
    for var in re.findall(r"\$\{(\w+)(?::[?-])", text):
        assert f"{var}=" in example or var == "UNMO_IMAGE", f"{var} is not in deploy/.env.example"
