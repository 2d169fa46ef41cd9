"""Compose file, k8s manifests and Dockerfiles, validated offline (no engine, no cluster)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize(("name", "document"), resources(), ids=[n for n, _ in resources()])
def test_manifest_is_valid_kubernetes(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


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
    (gpu,) = [d for _, d in resources() if d["metadata"]["name"] == "analyzer-gpu"]
    (container,) = gpu["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["ROP_ASR_DEVICE"] == "cuda"
