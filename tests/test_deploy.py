"""What operators install must name exactly the settings the product reads."""

import json
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from streams import __version__
from streams.settings import Settings, env_name

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_example_environment_lists_every_setting_with_its_default():
    lines = [line for line in (DEPLOY / "worker.env.example").read_text().splitlines() if "=" in line]
    example = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    defaults = Settings()
    assert set(example) == {env_name(spec.name) for spec in fields(Settings)}
    for spec in fields(Settings):
        assert example[env_name(spec.name)] == str(getattr(defaults, spec.name)).removesuffix(".0")


def test_the_readme_documents_every_environment_variable():
    text = README.read_text()
    missing = [env_name(spec.name) for spec in fields(Settings) if env_name(spec.name) not in text]
    assert missing == []


def test_the_example_environment_is_accepted():
    lines = [line for line in (DEPLOY / "worker.env.example").read_text().splitlines() if "=" in line]
    environ = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    assert Settings.from_env(environ) == Settings()


# --- container image, compose stack and Kubernetes manifests (no Docker engine or cluster here) ---

ROOT = DEPLOY.parent
COMPOSE = DEPLOY / "compose"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # the schemas kubernetes-validate ships for it are read offline
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule", "Kustomization"}  # CRDs: checked below by hand


def compose_file() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return document


def kubernetes_documents() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def pinned(image: str) -> bool:
    """A tag that names a release (digits), never `latest` or no tag at all."""
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def test_the_compose_file_matches_the_compose_specification():
    schema = json.loads((ROOT / "tests" / "vendor" / "compose-spec.schema.json").read_text())
    jsonschema.validate(compose_file(), schema)


def test_the_compose_stack_has_kafka_two_workers_the_simulator_and_the_monitoring_stack():
    services = compose_file()["services"]
    assert {"kafka", "worker-1", "worker-2", "simulator", "prometheus", "alertmanager", "grafana"} <= set(
        services
    )
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name in ("worker-1", "worker-2"):
        assert services[name]["env_file"] == "kbwatch.env"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"compose mounts a missing {source}"


def test_every_image_reference_is_pinned():
    images = [service["image"] for service in compose_file()["services"].values()]
    images += [
        container["image"]
        for document in kubernetes_documents()
        if document["kind"] == "StatefulSet"
        for container in document["spec"]["template"]["spec"]["containers"]
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    images += re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    assert len(images) >= 8
    assert [image for image in images if not pinned(image)] == []


def test_every_kbwatch_image_tag_names_this_release():
    # An operator copies these commands and files: an older tag runs an older kbwatch.
    texts = [README.read_text(), (COMPOSE / "compose.yaml").read_text()]
    texts += [path.read_text() for path in sorted(KUBERNETES.glob("*.yaml"))]
    tags = [tag for text in texts for tag in re.findall(r"\bkbwatch:(\d[\w.+-]*\w)", text)]
    assert len(tags) >= 5
    assert sorted({tag for tag in tags if tag != __version__}) == []


def test_the_image_is_slim_unprivileged_and_checks_liveness():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:[\d.]+-slim", dockerfile, re.MULTILINE)
    assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile and "/livez" in dockerfile
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "pip install" not in final_stage and "apt-get" not in final_stage


def test_every_kubernetes_manifest_matches_its_schema():
    documents = kubernetes_documents()
    core = [document for document in documents if document["kind"] not in CUSTOM_KINDS]
    assert {document["kind"] for document in core} >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    }
    for document in core:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomize_lists_every_manifest():
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_statefulset_probes_the_worker_and_keeps_its_store_on_a_volume():
    statefulset = next(document for document in kubernetes_documents() if document["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["data"] == "/var/lib/kbwatch"
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    config = next(document for document in kubernetes_documents() if document["kind"] == "ConfigMap")
    assert grace > float(config["data"]["KBWATCH_SHUTDOWN_GRACE_SECONDS"])
    assert config["data"]["KBWATCH_DATA_DIR"] == mounts["data"]


def test_the_podmonitor_scrapes_the_port_the_workers_serve():
    documents = kubernetes_documents()
    monitor = next(document for document in documents if document["kind"] == "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    statefulset = next(document for document in documents if document["kind"] == "StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_prometheusrule_embeds_exactly_the_rules_the_monitoring_tests_check():
    rule = next(document for document in kubernetes_documents() if document["kind"] == "PrometheusRule")
    groups = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"), key=lambda p: "alerts" in p.name):
        groups += yaml.safe_load(path.read_text())["groups"]
    assert rule["spec"]["groups"] == groups


def test_the_environment_in_deploy_names_only_settings_the_worker_reads():
    known = {env_name(spec.name) for spec in fields(Settings)}
    used: dict[str, str] = {}
    for line in (COMPOSE / "kbwatch.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            used[name] = value
    for document in kubernetes_documents():
        if document["kind"] in ("ConfigMap", "Secret"):
            used.update(document.get("data") or {})
            used.update(document.get("stringData") or {})
    assert set(used) <= known, set(used) - known
    Settings.from_env(used).validate()
    unit = (DEPLOY / "systemd" / "kbwatch-worker.service").read_text()
    assert set(re.findall(r"KBWATCH_[A-Z_]+", unit)) <= known


def test_the_image_build_finds_what_it_copies_and_leaves_the_rest_out():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.MULTILINE):
        for source in line.split()[:-1]:  # the last one is the destination
            assert (ROOT / source).exists(), f"the Dockerfile copies a missing {source}"
    context = (COMPOSE / compose_file()["x-worker"]["build"]["context"]).resolve()
    assert context == ROOT.resolve() and (context / "Dockerfile").is_file()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


def test_the_wheel_the_image_installs_holds_every_package(tmp_path):
    """The image runs `pip install .`, not the editable install the tests use."""
    source = tmp_path / "source"  # setuptools builds in the tree it is given: not this one
    shutil.copytree(ROOT / "streams", source / "streams", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    completed = subprocess.run(
        [*command, str(source), "-w", str(tmp_path)],
        capture_output=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    (wheel,) = tmp_path.glob("kbwatch-*.whl")
    packed = {name.rsplit("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    packages = {str(init.parent.relative_to(ROOT)) for init in (ROOT / "streams").rglob("__init__.py")}
    assert packages <= packed
