"""The kustomize overlays: rendered with ``kubectl kustomize``, validated offline against the
Kubernetes JSON schemas (kubernetes-validate, strict), and checked for what production needs:
probes on the health routes, non-root and read-only pods, secrets referenced and never inlined,
HPA/PDB/NetworkPolicy, one CDC replica, and a headwater.yaml the platform accepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater.config import Config
from tests.deploy.conftest import DEPLOY, run
from tests.fix_services import require_service

OVERLAYS_DIR = DEPLOY / "k8s" / "overlays"
OVERLAYS = sorted(p.name for p in OVERLAYS_DIR.iterdir() if (p / "kustomization.yaml").exists())
PRODUCTION = [o for o in OVERLAYS if o.startswith("production")]
# EKS's oldest supported minor and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
SECRET_NAME = re.compile(r"(DSN|URL|PASSWORD|SECRET|TOKEN|KEY)", re.IGNORECASE)
# Config fields that hold credentials: in a ConfigMap they may only be ${VAR} references.
SECRET_FIELDS = {"dsn", "password", "cursor_secret", "access_key_id", "secret_access_key",
                 "hs256_secret", "routing_key"}
ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def test_every_overlay_is_found() -> None:
    assert {"embedded", "production-postgres-s3-kafka", "production-nats"} <= set(OVERLAYS)


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for overlay in OVERLAYS:
        result = run([kubectl, "kustomize", str(OVERLAYS_DIR / overlay)])
        assert result.returncode == 0, f"{overlay}: {result.stderr}"
        out[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def config_text(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> str:
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    name = next(v["configMap"]["name"] for v in volumes if "configMap" in v)
    return one(docs, "ConfigMap", name)["data"]["headwater.yaml"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlay_validates_against_the_kubernetes_schemas(rendered, overlay: str, version: str) -> None:
    kubernetes_validate = _kubernetes_validate()
    docs = rendered[overlay]
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: "
                        f"{err.message} at {list(err.path)}")


def test_the_validator_rejects_a_broken_manifest(rendered) -> None:
    kubernetes_validate = _kubernetes_validate()
    deployment = one(rendered["production-nats"], "Deployment", "headwater")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProb"] = broken["spec"]["template"]["spec"]["containers"][0].pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_probes_hit_the_health_routes(rendered, overlay: str) -> None:
    deployment = one(rendered[overlay], "Deployment", "headwater")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The Service reaches the pods on the named port.
    service = one(rendered[overlay], "Service", "headwater")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_arguments_parse_with_the_cli(rendered, overlay: str) -> None:
    import typer

    from headwater.cli import app

    deployment = one(rendered[overlay], "Deployment", "headwater")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in container, "the image's entrypoint is `headwater serve`"
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    ctx = serve.make_context("serve", list(container["args"]))
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_with_a_read_only_root_filesystem(rendered, overlay: str) -> None:
    for deployment in find(rendered[overlay], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        mounted_volumes = {v["name"] for v in pod["volumes"]}
        for c in containers(deployment):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            # Writable places: the platform directory and /tmp; the config is read-only.
            assert {"/var/lib/headwater", "/tmp", "/etc/headwater"} <= set(mounts)
            assert mounts["/etc/headwater"]["readOnly"] is True
            assert {m["name"] for m in c["volumeMounts"]} <= mounted_volumes
            env = {e["name"]: e for e in c["env"]}
            assert env["HEADWATER_CONFIG"]["value"] == "/etc/headwater/headwater.yaml"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_inlined(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    assert not find(docs, "Secret"), "Secrets are created outside Git and referenced"
    for deployment in find(docs, "Deployment"):
        for c in containers(deployment):
            assert "envFrom" not in c or all("secretRef" in e or "configMapRef" in e for e in c["envFrom"])
            for e in c.get("env", []):
                if SECRET_NAME.search(e["name"]) and e["name"] != "HEADWATER_CONFIG":
                    assert "value" not in e, f"{e['name']} is inlined in {deployment['metadata']['name']}"
                    assert "secretKeyRef" in e["valueFrom"], e


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_is_accepted_by_the_platform_and_keeps_credentials_out(rendered, overlay: str,
                                                                      tmp_path: Path) -> None:
    docs = rendered[overlay]
    for deployment in find(docs, "Deployment"):
        text = config_text(docs, deployment)
        raw = yaml.safe_load(text)
        leaves = _leaves(raw)
        refs = {m for _, v in leaves for m in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", str(v))}
        for c in containers(deployment):
            env = {e["name"] for e in c.get("env", [])}
            # Every ${VAR} the file needs is set in the container, from a Secret.
            assert refs <= env, f"{deployment['metadata']['name']}/{c['name']} lacks {refs - env}"
        credentials = [(k, v) for k, v in leaves if k in SECRET_FIELDS]
        metadata_url = str((raw.get("metadata") or {}).get("url", "sqlite:"))
        if not metadata_url.startswith("sqlite:"):  # an embedded metadata file holds no credential
            credentials.append(("metadata.url", metadata_url))
        if overlay in PRODUCTION:
            assert len(credentials) >= 3, credentials  # app DSN, metadata URL, cursor secret
        for key, value in credentials:
            assert ENV_REF.match(str(value)), f"{overlay}: {key} must be a ${{VAR}} reference"
        path = tmp_path / f"{deployment['metadata']['name']}.yaml"
        path.write_text(text)
        cfg = Config.load(path, env={name: f"placeholder-{name.lower()}" for name in refs})
        assert Path(cfg.platform_dir) == Path("/var/lib/headwater")
        if overlay in PRODUCTION:
            # Shared state only: nothing a second replica could not see.
            kinds = {s.kind for s in cfg.stores.values()}
            assert kinds <= {"postgres", "parquet", "snowflake"}, kinds
            assert all(s.root.startswith("s3://") for s in cfg.stores.values() if s.kind == "parquet")
            assert cfg.metadata.url.get_secret_value().startswith("placeholder-")
            assert cfg.security.cursor_secret is not None
            assert (cfg.events.bus or "").split(":")[0] in {"kafka", "nats"}


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_production_scales_and_is_protected(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    deployment = one(docs, "Deployment", "headwater")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = one(docs, "HorizontalPodAutoscaler", "headwater")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "headwater"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = one(docs, "PodDisruptionBudget", "headwater")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    policy = one(docs, "NetworkPolicy", "headwater")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ingress_ports == ["http"]


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_service_account_carries_the_iam_role(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    deployment = one(docs, "Deployment", "headwater")
    sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    sa = one(docs, "ServiceAccount", sa_name)
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+",
                        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])


@pytest.mark.parametrize("overlay", PRODUCTION)
def test_cdc_connector_runs_exactly_once(rendered, overlay: str) -> None:
    import typer

    from headwater.cli import app

    docs = rendered[overlay]
    cdc = one(docs, "Deployment", "headwater-cdc")
    assert cdc["spec"]["replicas"] == 1
    assert cdc["spec"]["strategy"] == {"type": "Recreate"}
    assert not [h for h in find(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "headwater-cdc"]
    pod = cdc["spec"]["template"]["spec"]
    # Its own identity, without the service's AWS role.
    sa = one(docs, "ServiceAccount", pod["serviceAccountName"])
    assert pod["serviceAccountName"] != "headwater"
    assert "eks.amazonaws.com/role-arn" not in (sa["metadata"].get("annotations") or {})
    root = typer.main.get_command(app)
    for c in containers(cdc):
        argv = c["command"]
        assert argv[0] == "headwater"
        group = root.commands[argv[1]]  # type: ignore[attr-defined]
        sub = group.commands[argv[2]]
        sub.make_context(argv[2], argv[3:])  # the CLI accepts these options
    assert pod["containers"][0]["command"][:3] == ["headwater", "cdc", "start"]
    policy = one(docs, "NetworkPolicy", "headwater-cdc")
    assert policy["spec"]["ingress"] == [] and "Ingress" in policy["spec"]["policyTypes"]


def test_embedded_is_one_pod_on_a_persistent_volume(rendered) -> None:
    docs = rendered["embedded"]
    deployment = one(docs, "Deployment", "headwater")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not find(docs, "HorizontalPodAutoscaler")
    assert not find(docs, "Deployment", "headwater-cdc")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    one(docs, "PersistentVolumeClaim", claim)
    assert one(docs, "PodDisruptionBudget", "headwater")
    assert one(docs, "NetworkPolicy", "headwater")


def _leaves(node: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, str(k))]
    if isinstance(node, list):
        return [leaf for v in node for leaf in _leaves(v, key)]
    return [(key, node)]


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        require_service("kubernetes-validate", "pip install 'headwater[test]'")
    return kubernetes_validate
