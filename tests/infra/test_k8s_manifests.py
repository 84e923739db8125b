"""The Kubernetes manifests under docker/k8s/ validated against their schemas, offline.

Core kinds (Namespace, PVC, ConfigMap, Deployment, Service, HPA, PDB) go through
kubernetes-validate's strict schemas (unknown fields rejected, as ``kubectl --validate=strict``
does); InferenceService through the vendored KServe schema, whose Kubernetes types refer to the
same definitions. Semantic checks follow: the kustomization lists every manifest, selectors
match, every referenced ConfigMap and PVC is defined, and no Secret is committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "docker" / "k8s"
KSERVE_SCHEMA = K8S_DIR / "schemas" / "inferenceservice-serving.kserve.io-v1beta1.json"
# The Kubernetes release validated against: the oldest one that defines every core type the
# KServe 0.21 schema refers to.
K8S_VERSION = "1.36.0"
KSERVE_API = ("serving.kserve.io/v1beta1", "InferenceService")
MANIFESTS = sorted(
    path
    for path in K8S_DIR.glob("*.yaml")
    if path.name not in {"kustomization.yaml", "kustomizeconfig.yaml"}
)


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _all_resources() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in MANIFESTS for doc in _documents(path)]


@pytest.fixture(scope="module")
def kserve_validator() -> jsonschema.Draft202012Validator:
    definitions_path = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{K8S_VERSION}-local-strict"
        / "_definitions.json"
    )
    definitions = Resource.from_contents(json.loads(definitions_path.read_text()))
    schema = json.loads(KSERVE_SCHEMA.read_text())
    registry = Registry().with_resources(
        [(definitions.id(), definitions), (schema["$id"], Resource.from_contents(schema))]
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _errors(resource: dict, kserve_validator) -> list[str]:
    if (resource.get("apiVersion"), resource.get("kind")) == KSERVE_API:
        return [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in kserve_validator.iter_errors(resource)
        ]
    try:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return []


def test_manifests_exist():
    kinds = {doc["kind"] for _, doc in _all_resources()}
    assert {"InferenceService", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_matches_schema(path, kserve_validator):
    for resource in _documents(path):
        assert _errors(resource, kserve_validator) == [], f"{path.name}: {resource['kind']}"


def test_kserve_schema_rejects_what_the_crd_rejects(kserve_validator):
    """The vendored schema is not a rubber stamp: typos and bad values fail."""
    good = _documents(K8S_DIR / "triton-inferenceservice.yaml")[0]
    assert _errors(good, kserve_validator) == []

    typo = json.loads(json.dumps(good))
    typo["spec"]["predictor"]["minReplica"] = 1
    assert any("minReplica" in error for error in _errors(typo, kserve_validator))

    bad_metric = json.loads(json.dumps(good))
    bad_metric["spec"]["predictor"]["scaleMetric"] = "latency"
    assert _errors(bad_metric, kserve_validator)

    no_format = json.loads(json.dumps(good))
    del no_format["spec"]["predictor"]["model"]["modelFormat"]
    assert _errors(no_format, kserve_validator)

    # A Kubernetes type inside the CRD: resources.requests must map names to quantities.
    bad_resources = json.loads(json.dumps(good))
    bad_resources["spec"]["predictor"]["model"]["resources"]["requests"] = ["cpu"]
    assert _errors(bad_resources, kserve_validator)


def test_core_validation_is_strict(kserve_validator):
    deployment = next(doc for _, doc in _all_resources() if doc["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert _errors(broken, kserve_validator)


def test_inference_services_autoscale():
    services = [doc for _, doc in _all_resources() if doc["kind"] == "InferenceService"]
    assert {doc["metadata"]["name"] for doc in services} == {
        "movierec-torchserve",
        "movierec-triton",
    }
    for service in services:
        predictor = service["spec"]["predictor"]
        assert 1 <= predictor["minReplicas"] < predictor["maxReplicas"], service["metadata"]
        assert predictor["scaleMetric"] in {"concurrency", "rps", "cpu"}
        assert predictor["scaleTarget"] > 0
    triton = next(doc for doc in services if doc["metadata"]["name"] == "movierec-triton")
    assert triton["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in MANIFESTS}
    for configuration in kustomization.get("configurations", []):
        assert (K8S_DIR / configuration).is_file()


def test_web_service_and_autoscaler_target_the_deployment():
    resources = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _all_resources()}
    deployment = resources[("Deployment", "movierec-web")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = resources[("Service", "movierec-web")]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {
        port["name"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    hpa = resources[("HorizontalPodAutoscaler", "movierec-web")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "movierec-web",
    }
    pdb = resources[("PodDisruptionBudget", "movierec-web")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_references_resolve_and_no_secret_is_committed():
    resources = _all_resources()
    kinds = [doc["kind"] for _, doc in resources]
    assert "Secret" not in kinds, "Secrets are created from env files at deploy time"
    defined = {(doc["kind"], doc["metadata"]["name"]) for _, doc in resources}
    deployment = next(doc for _, doc in resources if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    for source in pod["containers"][0]["envFrom"]:
        if "configMapRef" in source:
            assert ("ConfigMap", source["configMapRef"]["name"]) in defined
    for volume in pod["volumes"]:
        claim = volume["persistentVolumeClaim"]["claimName"]
        assert ("PersistentVolumeClaim", claim) in defined
    triton = next(doc for _, doc in resources if doc["metadata"]["name"] == "movierec-triton")
    claim = triton["spec"]["predictor"]["model"]["storageUri"].removeprefix("pvc://").split("/")[0]
    assert ("PersistentVolumeClaim", claim) in defined
    namespaces = {
        doc["metadata"].get("namespace") for _, doc in resources if doc["kind"] != "Namespace"
    }
    assert namespaces == {"movierec"}
