"""deploy/k8s validated offline (no Kubernetes can run here): every manifest against the schemas of several
Kubernetes versions with `kubernetes-validate --strict` (unknown fields and wrong types fail), apiVersions
checked by hand (the validator only warns about unknown ones), and the pod's command line matched to the
compose file, which runs the same image, host names and DNS aliases (tests/deploy/test_compose.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore  (installed with kubernetes-validate)

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
COMPOSE = K8S.parent / "compose" / "docker-compose.yml"
VERSIONS = ["1.27.0", "1.31.0", "1.35.0"]
API = {"Secret": "v1", "Service": "v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1"}


def manifests() -> list[Path]:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [K8S / r for r in kust["resources"]]


def test_the_kustomization_names_every_manifest_and_nothing_else():
    names = sorted(p.name for p in manifests())
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert names == on_disk


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version):
    for p in manifests():
        r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(p)],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{p.name} against {version}:\n{r.stdout}{r.stderr}"


def test_api_versions_are_the_stable_ones():
    for p in manifests():
        for doc in yaml.safe_load_all(p.read_text()):
            assert doc["apiVersion"] == API[doc["kind"]], (p.name, doc["kind"], doc["apiVersion"])


def docs() -> dict[str, dict]:
    return {d["kind"]: d for p in manifests() for d in yaml.safe_load_all(p.read_text())}


def test_the_statefulset_is_shaped_as_the_issue_asks():
    sts = docs()["StatefulSet"]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert spec["serviceName"] == "galgo-peer" and spec["replicas"] == 3
    assert env["GALGO_NODE_ID_FROM_HOSTNAME"]["value"] == "true"
    assert "secretKeyRef" in env["GALGO_CLUSTER_SECRET"]["valueFrom"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"]
    assert c["lifecycle"]["preStop"]["exec"]["command"][:2] == ["/usr/bin/galgo-admin", "drain"]
    assert pod["terminationGracePeriodSeconds"] > int(c["lifecycle"]["preStop"]["exec"]["command"][2])
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert docs()["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    headless = [d for p in manifests() for d in yaml.safe_load_all(p.read_text())
                if d["kind"] == "Service" and d["metadata"]["name"] == "galgo-peer"][0]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]


def test_the_pods_roster_is_the_one_compose_rehearses():
    """Same roster (DNS names galgo-N.galgo-peer, ports), same id rule: what test_compose runs is what
    the StatefulSet would run."""
    c = docs()["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    k8s_roster = {e["name"]: e.get("value") for e in c["env"]}["GALGO_CLUSTER_NODES"]
    compose = yaml.safe_load(COMPOSE.read_text())
    for i in range(3):
        svc = compose["services"][f"galgo-{i}"]
        assert svc["hostname"] == f"galgo-{i}"
        assert f"galgo-{i}.galgo-peer" in svc["networks"]["galgo"]["aliases"]
        assert svc["environment"]["GALGO_CLUSTER_NODES"] == k8s_roster
        assert svc["environment"]["GALGO_NODE_ID_FROM_HOSTNAME"] == "true"
    assert re.fullmatch(r"(\d@galgo-\d\.galgo-peer:8400:8090:8080:3000,?){3}", k8s_roster)


def merge_named(base: list, patch: list) -> list:
    """A strategic merge of lists of objects keyed by "name", as kustomize does for containers, env,
    volumeMounts and volumes."""
    out = [dict(x) for x in base]
    for p in patch:
        hit = next((o for o in out if o.get("name") == p.get("name")), None)
        if hit is None:
            out.append(p)
        else:
            for k, v in p.items():
                hit[k] = merge_named(hit.get(k, []), v) if isinstance(v, list) and k in ("env", "volumeMounts") else v
    return out


def test_the_tls_overlay_patches_the_statefulset_into_a_valid_one(tmp_path):
    kust = yaml.safe_load((K8S / "tls" / "kustomization.yaml").read_text())
    assert kust["resources"] == ["../"]
    patch = yaml.safe_load((K8S / "tls" / kust["patches"][0]["path"]).read_text())
    sts = docs()["StatefulSet"]
    assert patch["kind"] == sts["kind"] and patch["metadata"]["name"] == sts["metadata"]["name"]
    pod, ppod = sts["spec"]["template"]["spec"], patch["spec"]["template"]["spec"]
    pod["containers"] = merge_named(pod["containers"], ppod["containers"])
    pod["volumes"] = merge_named(pod["volumes"], ppod["volumes"])
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    for key in ("CA", "CERT", "KEY"):
        assert env[f"GALGO_CLUSTER_TLS_{key}"].startswith(mounts["tls"] + "/")
    assert env["GALGO_CLUSTER_SECRET"] is None  # still from the Secret
    out = tmp_path / "statefulset-tls.yaml"
    out.write_text(yaml.safe_dump(sts))
    for version in VERSIONS:
        r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(out)],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"the patched StatefulSet against {version}:\n{r.stdout}{r.stderr}"
