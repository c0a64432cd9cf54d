"""The Kubernetes manifests in deploy/k8s are valid and keep the properties natrix relies on.

Every document is checked by a real schema validator (kubernetes-validate, which bundles the
API's JSON schemas, strict: unknown fields are errors) against the oldest Kubernetes these
manifests support (1.30: the preStop sleep action) and the newest the validator knows. The
kustomize layouts are rendered with `kubectl kustomize` when kubectl is installed and their
output validated too. The configuration files the deployments ship are checked by natrix-server
itself (`-t`), with the environment variables the deployments set.
"""

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import server_binary

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
LAYOUTS = ["cluster", "mixed-arch"]
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def manifest_files() -> list:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def resources() -> list:
    """(file, document) for every Kubernetes object in deploy/k8s."""
    found = []
    for path in manifest_files():
        for doc in documents(path.read_text()):
            found.append((path, doc))
    return found


def resource_id(item) -> str:
    path, doc = item
    return f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}"


def of_kind(items, kind: str) -> list:
    return [doc for _, doc in items if doc["kind"] == kind]


def render(layout: str) -> list:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize layouts cannot be rendered here")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / layout)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return documents(out.stdout)


def validate(doc: dict) -> None:
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version}: "
                        f"{'.'.join(str(p) for p in e.path)}: {e.message}")


def config_text(configmap: dict) -> str:
    return configmap["data"]["natrix.conf"]


def routes(conf: str) -> set:
    return {line.strip() for line in conf.splitlines() if line.strip().startswith("nats-route://")}


def pod_routes(statefulsets: list) -> set:
    """The route URL of every pod the StatefulSets create (pod DNS names on their Service)."""
    return {
        f"nats-route://{s['metadata']['name']}-{i}.{s['spec']['serviceName']}:6222"
        for s in statefulsets
        for i in range(s["spec"]["replicas"])
    }


@pytest.mark.parametrize("item", resources(), ids=resource_id)
def test_every_manifest_is_valid_for_kubernetes(item):
    validate(item[1])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_renders_to_valid_manifests(layout):
    docs = render(layout)
    assert docs, f"kubectl kustomize {layout} rendered nothing"
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_routes_name_exactly_the_pods_of_the_layout(layout):
    docs = render(layout)
    items = [(None, d) for d in docs]
    statefulsets = of_kind(items, "StatefulSet")
    (configmap,) = of_kind(items, "ConfigMap")
    assert sum(s["spec"]["replicas"] for s in statefulsets) == 3
    assert routes(config_text(configmap)) == pod_routes(statefulsets)


def test_kustomizations_list_only_what_exists():
    for kustomization in K8S.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kustomization.read_text())["resources"]:
            target = kustomization.parent / entry
            assert target.is_file() or (target / "kustomization.yaml").is_file(), \
                f"{kustomization.relative_to(K8S)} lists {entry}, which does not exist"


def test_statefulset_keeps_the_properties_natrix_relies_on():
    items = resources()
    (sts,) = of_kind(items, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]

    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert spec["replicas"] == 3

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"client": 4222, "cluster": 6222, "monitor": 8222}
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/healthz" and ports[readiness["port"]] == 8222
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness["path"].startswith("/healthz") and ports[liveness["port"]] == 8222

    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0 and security["fsGroup"] == security["runAsGroup"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "memory" in container["resources"]["requests"]
    assert "memory" in container["resources"]["limits"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"

    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/data" and mounts["config"] == "/etc/natrix"
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["data"]
    (config_volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    configmaps = {c["metadata"]["name"]: c for c in of_kind(items, "ConfigMap")}
    assert config_volume["configMap"]["name"] in configmaps


def test_services_and_budget_cover_the_brokers():
    items = resources()
    (sts,) = of_kind(items, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s for s in of_kind(items, "Service")}

    headless = services[sts["spec"]["serviceName"]]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["ports"]} == {4222, 6222, 8222}
    client = services["natrix"]["spec"]
    assert 4222 in {p["port"] for p in client["ports"]}
    assert not client.get("publishNotReadyAddresses", False)
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= pod_labels.items()

    (pdb,) = of_kind(items, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def shipped_configs() -> list:
    """(text, environment) of every configuration file a deployment ships, named by deployment."""
    configs = [
        pytest.param((ROOT / "deploy/docker/natrix.conf").read_text(), {}, id="docker"),
        pytest.param((ROOT / "deploy/compose/natrix.conf").read_text(),
                     {"SERVER_NAME": "n1", "CLIENT_PORT": "14222"}, id="compose"),
    ]
    for path, doc in resources():
        if doc["kind"] == "ConfigMap":
            configs.append(pytest.param(config_text(doc), {"POD_NAME": "natrix-0", "POD_IP": "10.0.0.7"},
                                        id=f"k8s-{path.parent.name}"))
    return configs


@pytest.mark.parametrize("text,env", shipped_configs())
def test_shipped_configs_are_accepted_by_natrix(text, env, tmp_path):
    conf = tmp_path / "natrix.conf"
    conf.write_text(text)
    result = subprocess.run(
        [server_binary("natrix"), "-c", str(conf), "-t"],
        capture_output=True, text=True, timeout=30,
        env={**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}, **env},
    )
    assert result.returncode == 0, result.stderr.strip()
    assert "is valid" in result.stderr
