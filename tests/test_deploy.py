"""deploy/ Kubernetes manifests and KEDA examples: parsed and schema-checked without a cluster.

No network, so no upstream OpenAPI schemas: a small structural schema per kind (required keys
and types, the subset these files use) plus cross-object checks (selectors, probe ports, the
addresses KEDA calls).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((REPO / "deploy").rglob("*.yaml")) + sorted(
    (REPO / "examples").glob("keda-*.yaml")
)

# A schema node: a type, a dict of {key: (required, node)}, or a one-element list (array of).
Schema = Any
QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _req(node: Schema) -> tuple[bool, Schema]:
    return True, node


def _opt(node: Schema) -> tuple[bool, Schema]:
    return False, node


METADATA = {
    "name": _req(str),
    "namespace": _opt(str),
    "labels": _opt({"*": str}),
    "annotations": _opt({"*": str}),
}
PROBE = {
    "httpGet": _req({"path": _req(str), "port": _req((int, str))}),
    "initialDelaySeconds": _opt(int),
    "periodSeconds": _opt(int),
    "timeoutSeconds": _opt(int),
    "failureThreshold": _opt(int),
}
CONTAINER = {
    "name": _req(str),
    "image": _req(str),
    "imagePullPolicy": _opt(str),
    "command": _opt([str]),
    "args": _opt([str]),
    "ports": _opt([{"name": _opt(str), "containerPort": _req(int), "protocol": _opt(str)}]),
    "env": _opt([{"name": _req(str), "value": _opt(str), "valueFrom": _opt(dict)}]),
    "envFrom": _opt([dict]),
    "livenessProbe": _opt(PROBE),
    "readinessProbe": _opt(PROBE),
    "startupProbe": _opt(PROBE),
    "resources": _opt({"requests": _opt({"*": str}), "limits": _opt({"*": str})}),
    "securityContext": _opt(dict),
    "volumeMounts": _opt([{"name": _req(str), "mountPath": _req(str), "readOnly": _opt(bool)}]),
}
SPECS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {},
    ("v1", "Secret"): {"type": _opt(str), "stringData": _opt({"*": str})},
    ("v1", "ConfigMap"): {"data": _req({"*": str})},
    ("apps/v1", "Deployment"): {
        "spec": _req(
            {
                "replicas": _opt(int),
                "revisionHistoryLimit": _opt(int),
                "selector": _req({"matchLabels": _req({"*": str})}),
                "strategy": _opt(dict),
                "template": _req(
                    {
                        "metadata": _req({"labels": _req({"*": str}), "annotations": _opt(dict)}),
                        "spec": _req(
                            {
                                "containers": _req([CONTAINER]),
                                "volumes": _opt([dict]),
                                "securityContext": _opt(dict),
                                "terminationGracePeriodSeconds": _opt(int),
                            }
                        ),
                    }
                ),
            }
        )
    },
    ("v1", "Service"): {
        "spec": _req(
            {
                "type": _opt(str),
                "selector": _req({"*": str}),
                "ports": _req(
                    [
                        {
                            "name": _opt(str),
                            "port": _req(int),
                            "targetPort": _opt((int, str)),
                            "protocol": _opt(str),
                            "appProtocol": _opt(str),
                        }
                    ]
                ),
            }
        )
    },
    ("policy/v1", "PodDisruptionBudget"): {
        "spec": _req({"minAvailable": _opt((int, str)), "selector": _req(dict)})
    },
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "spec": _req(
            {
                "secretTargetRef": _req(
                    [{"parameter": _req(str), "name": _req(str), "key": _req(str)}]
                )
            }
        )
    },
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "spec": _req(
            {
                "scaleTargetRef": _req({"name": _req(str), "kind": _opt(str)}),
                "pollingInterval": _opt(int),
                "cooldownPeriod": _opt(int),
                "minReplicaCount": _opt(int),
                "maxReplicaCount": _opt(int),
                "advanced": _opt(dict),
                "fallback": _opt({"failureThreshold": _req(int), "replicas": _req(int)}),
                "triggers": _req(
                    [
                        {
                            "type": _req(str),
                            "metricType": _opt(str),
                            "metadata": _req({"*": str}),
                            "authenticationRef": _opt({"name": _req(str)}),
                        }
                    ]
                ),
            }
        )
    },
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): {"resources": _req([str])},
}


def check(value: Any, node: Schema, path: str) -> list[str]:
    """Structural errors of value against a schema node (empty list = valid)."""
    if isinstance(node, list):
        if not isinstance(value, list) or not value:
            return [f"{path}: expected a non-empty list"]
        return [e for i, item in enumerate(value) for e in check(item, node[0], f"{path}[{i}]")]
    if isinstance(node, dict):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        if "*" in node:
            return [e for k, v in value.items() for e in check(v, node["*"], f"{path}.{k}")]
        errors = [f"{path}.{k}: required" for k, (req, _) in node.items() if req and k not in value]
        for key, item in value.items():
            if key not in node:
                errors.append(f"{path}.{key}: unknown field")
            else:
                errors.extend(check(item, node[key][1], f"{path}.{key}"))
        return errors
    # bool is an int in Python; a YAML `true` where a number is expected is still an error.
    if isinstance(value, bool) and node is not bool:
        return [f"{path}: expected {node}, got bool"]
    return [] if isinstance(value, node) else [f"{path}: expected {node}, got {type(value)}"]


def validate(doc: dict) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in SPECS:
        return [f"unknown apiVersion/kind {key}"]
    if key[1] == "Kustomization":
        schema = {"apiVersion": _req(str), "kind": _req(str), **SPECS[key]}
    else:
        schema = {"apiVersion": _req(str), "kind": _req(str), "metadata": _req(METADATA)}
        schema.update(SPECS[key])
    errors = check(doc, schema, key[1])
    name = (doc.get("metadata") or {}).get("name", "")
    if key[1] != "Kustomization" and not DNS_LABEL.match(name):
        errors.append(f"{key[1]}: name {name!r} is not a DNS label")
    return errors


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def api_objects() -> dict[str, dict]:
    return {d["kind"]: d for d in load(REPO / "deploy" / "api.yaml")}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_documents_match_schema(path: Path) -> None:
    docs = load(path)
    assert docs
    for doc in docs:
        assert validate(doc) == []


def test_schema_check_rejects_broken_documents() -> None:
    deployment = api_objects()["Deployment"]
    broken = copy.deepcopy(deployment)
    del broken["spec"]["selector"]
    broken["spec"]["replicas"] = "2"
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/"
    errors = validate(broken)
    assert "Deployment.spec.selector: required" in errors
    assert any(e.startswith("Deployment.spec.replicas: expected") for e in errors)
    assert any("pathh: unknown field" in e for e in errors)
    assert validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}) != []


def test_deployment_probes_resources_and_selector() -> None:
    objs = api_objects()
    deployment, service = objs["Deployment"], objs["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        port = container[probe]["httpGet"]["port"]
        assert port in named_ports or port in named_ports.values()
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in named_ports
    # The container's command must start both servers on the ports the Service targets.
    command = container["command"]
    assert int(command[command.index("--port") + 1]) == named_ports["http"]
    assert int(command[command.index("--grpc-port") + 1]) == named_ports["grpc"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys() <= resources["limits"].keys()
    for value in (*resources["requests"].values(), *resources["limits"].values()):
        assert QUANTITY.match(value), value
    assert deployment["spec"]["replicas"] >= 2


def test_cli_accepts_the_container_command() -> None:
    from typer.testing import CliRunner

    from scaleahead.cli import app

    (container,) = api_objects()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "scaleahead"
    # --help after the real options: typer parses (and would reject) them, then exits 0.
    result = CliRunner().invoke(app, [*container["command"][1:], "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "keda").glob("*.yaml")), ids=str)
def test_keda_scalers_point_at_the_api_service(path: Path) -> None:
    service = api_objects()["Service"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    docs = load(path)
    auths = {d["metadata"]["name"] for d in docs if d["kind"] == "TriggerAuthentication"}
    secrets = {
        (d["metadata"]["name"], k) for d in docs if d["kind"] == "Secret" for k in d["stringData"]
    }
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled
    for obj in scaled:
        spec = obj["spec"]
        assert 0 < spec["minReplicaCount"] <= spec["maxReplicaCount"]
        for trigger in spec["triggers"]:
            assert trigger["authenticationRef"]["name"] in auths
            meta = trigger["metadata"]
            if trigger["type"] == "external":
                assert meta["scalerAddress"] == f"{host}:{ports['grpc']}"
                assert meta["service"]
            else:
                assert trigger["type"] == "metrics-api"
                assert meta["url"].startswith(f"http://{host}:{ports['http']}/v1/services/")
                assert meta["url"].endswith("/recommendation")
    for doc in docs:
        if doc["kind"] == "TriggerAuthentication":
            for ref in doc["spec"]["secretTargetRef"]:
                assert (ref["name"], ref["key"]) in secrets


def test_kustomization_lists_existing_files() -> None:
    (kustomization,) = load(REPO / "deploy" / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (REPO / "deploy" / resource).is_file()
