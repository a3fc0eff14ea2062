#!/usr/bin/env python3
"""Checks what can be checked of the deployment files without a container engine or a
cluster (no image can be pulled on the machines that run scripts/test.sh):

- every Kubernetes manifest under deploy/kubernetes against the Kubernetes schemas
  (kubernetes-validate --strict), except KEDA's ScaledObject, a custom resource whose
  schema is not in kubernetes-validate: its fields are checked here by hand;
- the workers' terminationGracePeriodSeconds outlasts worker.grace_period;
- every metric the Grafana dashboard, the KEDA triggers, the HPA and the Prometheus
  config's consumers query is one jobfleet exports (named in common/src/telemetry.rs);
- the compose file's Kafka runs the version (scripts/kafka/pom.xml) and every setting
  (scripts/kafka/server.properties) the tests and benchmarks run;
- the compose file and the Prometheus config themselves are checked by scripts/test.sh
  with docker-compose and promtool.

Usage: check-deploy.py ROOT KUBERNETES_VALIDATE
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1])
VALIDATE = sys.argv[2]
K8S = ROOT / "deploy" / "kubernetes"
failures = []


def fail(message):
    failures.append(message)


def exported_metrics():
    text = (ROOT / "common" / "src" / "telemetry.rs").read_text()
    names = set(re.findall(r'pub const [A-Z_]+: &str = "(jobfleet_[a-z_]+)"', text))
    if len(names) < 10:
        fail(f"found only {len(names)} metric names in common/src/telemetry.rs")
    return names


def metric_names(expr):
    return set(re.findall(r"\b(jobfleet_[a-z_]+)", expr))


def check_names(where, expr, exported):
    for name in metric_names(expr):
        # Summaries and histograms also export _sum and _count.
        base = re.sub(r"_(sum|count|bucket)$", "", name)
        if name not in exported and base not in exported:
            fail(f"{where}: {name} is not a metric jobfleet exports (common/src/telemetry.rs)")
    if not metric_names(expr):
        fail(f"{where}: queries no jobfleet metric: {expr}")


def documents():
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def check_compose_kafka():
    """The compose file's Kafka is the one scripts/services.sh runs: same version, and
    each setting of scripts/kafka/server.properties as a KAFKA_* variable."""
    kafka = ROOT / "scripts" / "kafka"
    version = re.search(r"<kafka.version>(.+)</kafka.version>", (kafka / "pom.xml").read_text())
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["kafka"]
    if not version or service["image"] != f"apache/kafka:{version.group(1)}":
        fail(f"docker-compose.yml's kafka image {service['image']!r} is not the version in "
             "scripts/kafka/pom.xml")
    env = {k: str(v) for k, v in service["environment"].items()}
    for line in (kafka / "server.properties").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        # Listeners differ by design: the compose file adds one for the other containers.
        if key in ("inter.broker.listener.name", "listener.security.protocol.map"):
            continue
        name = "KAFKA_" + key.upper().replace(".", "_")
        if env.get(name) != value:
            fail(f"docker-compose.yml's kafka sets {name}={env.get(name)!r}; "
                 f"scripts/kafka/server.properties has {key}={value}")


def main():
    check_compose_kafka()
    exported = exported_metrics()
    standard = [p for p in sorted(K8S.glob("*.yaml")) if p.name != "keda-scaledobject.yaml"]
    result = subprocess.run([VALIDATE, "--strict", "--quiet", *map(str, standard)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"kubernetes-validate:\n{result.stdout}{result.stderr}")

    kinds = {}
    for path, doc in documents():
        kinds.setdefault(doc["kind"], []).append((path, doc))

    deployments = {d["metadata"]["name"]: d for _, d in kinds.get("Deployment", [])}
    worker = deployments.get("jobfleet-worker")
    scheduler = deployments.get("jobfleet-scheduler")
    if not worker or not scheduler:
        fail("deploy/kubernetes needs the jobfleet-worker and jobfleet-scheduler Deployments")
        return
    grace = worker["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= 30:
        fail(f"the worker's terminationGracePeriodSeconds ({grace}) must exceed "
             "worker.grace_period (30 s), or Kubernetes kills draining workers mid-job")
    if scheduler["spec"].get("replicas", 1) < 2:
        fail("run at least two schedulers (a standby takes over cron within seconds)")

    objects = kinds.get("ScaledObject", [])
    if len(objects) != 1:
        fail(f"expected one KEDA ScaledObject, found {len(objects)}")
    for path, so in objects:
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            fail(f"{path.name}: apiVersion must be keda.sh/v1alpha1")
        spec = so.get("spec", {})
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in deployments:
            fail(f"{path.name}: scaleTargetRef.name {target!r} names no Deployment")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
            fail(f"{path.name}: need 0 <= minReplicaCount <= maxReplicaCount")
        triggers = spec.get("triggers", [])
        if not triggers:
            fail(f"{path.name}: no triggers")
        for i, t in enumerate(triggers):
            meta = t.get("metadata", {})
            if t.get("type") != "prometheus":
                fail(f"{path.name}: trigger {i} is not a prometheus trigger")
            for key in ("serverAddress", "query", "threshold"):
                if key not in meta:
                    fail(f"{path.name}: trigger {i} has no metadata.{key}")
            for key in ("threshold", "activationThreshold"):
                if key in meta and not isinstance(meta[key], str):
                    fail(f"{path.name}: trigger {i} metadata.{key} must be a string")
                if key in meta:
                    float(meta[key])
            check_names(f"{path.name} trigger {i}", meta.get("query", ""), exported)

    for path, hpa in kinds.get("HorizontalPodAutoscaler", []):
        for m in hpa["spec"].get("metrics", []):
            if m.get("type") == "External":
                check_names(path.name, m["external"]["metric"]["name"], exported)

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/jobfleet.json").read_text())
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    if len(exprs) < 6:
        fail(f"the Grafana dashboard has only {len(exprs)} queries")
    for title, expr in exprs:
        check_names(f"Grafana panel {title!r}", expr, exported)

    wanted = {"jobfleet_queue_depth", "jobfleet_queue_oldest_waiting_seconds",
              "jobfleet_attempts_total", "jobfleet_job_run_seconds"}
    used = set().union(*(metric_names(e) for _, e in exprs))
    for name in sorted(wanted - used):
        fail(f"the Grafana dashboard does not show {name}")


main()
if failures:
    print("\n".join(f"deploy check failed: {f}" for f in failures), file=sys.stderr)
    sys.exit(1)
print("deploy: kubernetes manifests valid (--strict), ScaledObject fields, worker grace, "
      "compose Kafka as scripts/kafka, and every metric queried by Grafana, KEDA and the HPA is exported")
