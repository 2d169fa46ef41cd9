"""Compose file, k8s manifests and Dockerfiles, validated offline (no engine, no cluster)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from pymongo import uri_parser

from services.analyzer.jobs import STATES
from shared.amqp import CONSUMER_QUEUES
from shared.mongo import CALLS
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEDA_TOOLS = Path(__file__).resolve().parent / "keda"
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
DOCKERFILES = sorted((ROOT / "services").glob("*/Dockerfile"))
# CI sets this so a missing tool fails instead of skipping.
REQUIRE_TOOLS = os.environ.get("ROP_REQUIRE_ALL_TOOLS") == "1"


def resources() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{document['kind']}/{document['metadata']['name']}", document)
        for path in MANIFESTS
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def test_compose_file_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        if REQUIRE_TOOLS:
            pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed")
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_service_with_a_dockerfile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mongo", "rabbitmq"} <= set(services)
    assert services["mongo"]["image"].startswith("mongo:")
    assert "management" in services["rabbitmq"]["image"]
    for dockerfile in DOCKERFILES:
        name = dockerfile.parent.name
        assert services[name]["build"]["dockerfile"] == f"services/{name}/Dockerfile"


def is_keda(document: dict[str, Any]) -> bool:
    return str(document["apiVersion"]).startswith("keda.sh/")


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in resources() if d["kind"] == kind}


BUILT_IN = [(name, document) for name, document in resources() if not is_keda(document)]


@pytest.mark.parametrize(("name", "document"), BUILT_IN, ids=[n for n, _ in BUILT_IN])
def test_manifest_is_valid_kubernetes(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_keda_resources_are_valid_for_keda() -> None:
    """kubernetes-validate knows no CRDs: KEDA's own schemas (npm `@kubernetes-models/keda`,
    installed by `make test`) check its resources."""
    installed = KEDA_TOOLS / "node_modules" / "@kubernetes-models" / "keda"
    if shutil.which("node") is None or not installed.is_dir():
        if REQUIRE_TOOLS:
            pytest.fail(f"node or {installed} is missing (npm ci --prefix {KEDA_TOOLS})")
        pytest.skip("node or the KEDA schemas are not installed")
    keda = [document for _, document in resources() if is_keda(document)]
    assert {d["kind"] for d in keda} == {"ScaledObject", "TriggerAuthentication"}
    result = subprocess.run(
        ["node", str(KEDA_TOOLS / "validate.mjs")],
        input=json.dumps(keda),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    # The schemas catch what they should: a count that is not a number, a missing target.
    broken = copy.deepcopy(keda)
    scaled = [d for d in broken if d["kind"] == "ScaledObject"]
    scaled[0]["spec"]["minReplicaCount"] = "one"
    del scaled[1]["spec"]["scaleTargetRef"]
    result = subprocess.run(
        ["node", str(KEDA_TOOLS / "validate.mjs")],
        input=json.dumps(broken),
        capture_output=True,
        text=True,
        check=False,
    )
    assert len(json.loads(result.stdout)) == 2


def test_every_deployment_has_a_disruption_budget_and_a_grace_period() -> None:
    budgets = [
        d["spec"]["selector"]["matchLabels"] for d in of_kind("PodDisruptionBudget").values()
    ]
    for kind in ("Deployment", "StatefulSet"):
        for name, workload in of_kind(kind).items():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert any(selector.items() <= labels.items() for selector in budgets), name
            if kind == "Deployment":
                assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30
    gateway = of_kind("Deployment")["ingest"]["spec"]["template"]["spec"]
    pause = gateway["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The pause, then the open requests (10 s, services/ingest/__main__.py), fit the grace.
    assert pause + 10 < gateway["terminationGracePeriodSeconds"]


def spread_over_nodes(workload: dict[str, Any]) -> bool:
    """Whether no two of its pods may share a Kubernetes node."""
    anti = workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    rules = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    labels = workload["spec"]["selector"]["matchLabels"]
    return any(
        rule["topologyKey"] == "kubernetes.io/hostname"
        and rule["labelSelector"]["matchLabels"] == labels
        for rule in rules
    )


def test_the_broker_and_the_database_survive_losing_any_one_node() -> None:
    stateful = of_kind("StatefulSet")
    for name in ("rabbitmq", "mongodb"):
        assert stateful[name]["spec"]["replicas"] == 3, name
        assert spread_over_nodes(stateful[name]), name
    rabbit_config = of_kind("ConfigMap")["rabbitmq-config"]["data"]["rabbitmq.conf"]
    assert "peer_discovery_backend = k8s" in rabbit_config
    assert "quorum_queue.initial_cluster_size = 3" in rabbit_config
    mongod = stateful["mongodb"]["spec"]["template"]["spec"]["containers"][0]
    assert mongod["args"][:2] == ["--replSet", "rs0"]
    members = [f"mongodb-{ordinal}.mongodb.rop.svc.cluster.local:27017" for ordinal in range(3)]
    initiate = " ".join(
        of_kind("Job")["mongodb-init"]["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    assert all(member in initiate for member in members)

    config = of_kind("ConfigMap")["rop-config"]["data"]
    mongo = uri_parser.parse_uri(config["ROP_MONGO_URL"])
    assert sorted(f"{host}:{port}" for host, port in mongo["nodelist"]) == members
    options = mongo["options"]
    assert options["replicaSet"] == "rs0"
    assert options["w"] == "majority"
    assert options["readConcernLevel"] == "majority"
    amqp_host = urlsplit(config["ROP_AMQP_URL"]).hostname
    assert amqp_host is not None
    ready = of_kind("Service")[amqp_host.split(".")[0]]
    assert ready["spec"]["clusterIP"] == "None"  # resolves to every node, not one address
    assert not ready["spec"].get("publishNotReadyAddresses")
    assert Settings(mongo_url=config["ROP_MONGO_URL"]).mongo_url == config["ROP_MONGO_URL"]


def test_workers_scale_on_their_backlog_and_the_gateway_on_cpu() -> None:
    deployments = of_kind("Deployment")
    scaled = of_kind("ScaledObject")
    authentications = of_kind("TriggerAuthentication")
    queues = {f"rop.{queue.consumer}" for queue in CONSUMER_QUEUES}
    config = of_kind("ConfigMap")["rop-config"]["data"]
    database = urlsplit(config["ROP_MONGO_URL"]).path.strip("/")
    assert set(scaled) == {"downloader", "notifier", "analyzer", "analyzer-gpu"}
    for name, item in scaled.items():
        assert item["spec"]["scaleTargetRef"]["name"] in deployments
        assert item["spec"]["cooldownPeriod"] >= 300
        (trigger,) = item["spec"]["triggers"]
        assert trigger["authenticationRef"]["name"] in authentications
        meta = trigger["metadata"]
        if trigger["type"] == "rabbitmq":
            # The management API counts what is taken and not yet acknowledged too.
            assert (meta["protocol"], meta["mode"]) == ("http", "QueueLength")
            assert meta["queueName"] == f"rop.{name}"
            assert meta["queueName"] in queues
        else:
            assert trigger["type"] == "mongodb", name
            assert (meta["dbName"], meta["collection"]) == (database, CALLS)
            assert json.loads(meta["query"]) == {"analysis.state": {"$in": list(STATES)}}
    assert scaled["analyzer-gpu"]["spec"]["minReplicaCount"] == 0  # no job, no GPU held
    for authentication in authentications.values():
        for reference in authentication["spec"]["secretTargetRef"]:
            assert reference["name"] == "rop-autoscaling"
    (gateway,) = of_kind("HorizontalPodAutoscaler").values()
    assert gateway["spec"]["scaleTargetRef"]["name"] == "ingest"
    assert gateway["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_every_service_has_a_deployment_with_probes_and_limits() -> None:
    deployments = {d["metadata"]["name"]: d for _, d in resources() if d["kind"] == "Deployment"}
    for dockerfile in DOCKERFILES:
        deployment = deployments[dockerfile.parent.name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["limits"]
        assert container["resources"]["requests"]
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    stateful = {d["metadata"]["name"] for _, d in resources() if d["kind"] == "StatefulSet"}
    assert stateful == {"mongodb", "rabbitmq"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[d.parent.name for d in DOCKERFILES])
def test_dockerfile_is_slim_non_root_and_healthchecked(dockerfile: Path) -> None:
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    assert any(line.startswith("FROM python:3.11-slim") for line in lines)
    assert "USER 10001" in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines)


def test_the_gpu_analyzer_asks_for_a_gpu_and_uses_cuda() -> None:
    gpu = of_kind("Deployment")["analyzer-gpu"]
    (container,) = gpu["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["ROP_ASR_DEVICE"] == "cuda"


@pytest.mark.parametrize("name", ["analyzer", "analyzer-gpu"])
def test_an_analyzer_runs_as_many_threads_as_the_cores_it_requests(name: str) -> None:
    (container,) = of_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    field = env["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": container["name"], "resource": "requests.cpu", "divisor": "1"}
    assert container["resources"]["requests"]["cpu"].isdigit()  # whole cores: none rounded up


def test_every_analyzer_hears_russian_with_a_model_it_holds() -> None:
    """No analyzer runs an English-only model against Russian calls, or one it would
    have to download: the image's multilingual base, or a folder on a mounted volume."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert (
        compose["services"]["analyzer"]["environment"]["ROP_ASR_MODEL"] == "${ROP_ASR_MODEL:-base}"
    )
    for name in ("analyzer", "analyzer-gpu"):
        spec = of_kind("Deployment")[name]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        model = {item["name"]: item.get("value") for item in container["env"]}["ROP_ASR_MODEL"]
        if model == "base":
            continue
        mounts = [m for m in container["volumeMounts"] if model.startswith(m["mountPath"] + "/")]
        (mount,) = mounts
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        claim = volume["persistentVolumeClaim"]["claimName"]
        assert claim in of_kind("PersistentVolumeClaim")
