"""deploy/k8s, checked without a cluster: rendered by kustomize, validated against the
Kubernetes schemas, and read for the properties docs/deployment.md promises.

No cluster runs here. What a cluster would add (scheduling, endpoint propagation, the
ingress controller, cert-manager, Prometheus Adapter) is not tested; the server's side
of a rolling update (drain, busy/1013, reconnect) is, in test_failover.py.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.testclient import TestClient

from server.app import create_app
from server.runner import uvicorn_config
from server.settings import Settings
from tests.deploy import dockerfile
from tests.programs import require

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BENCHMARKS = REPO / "BENCHMARKS.md"
# The oldest Kubernetes release the manifests are meant for (preStop `sleep` is on by
# default from 1.30), and the newest whose schemas the validator ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

Obj = dict[str, Any]


def kustomize(directory: Path) -> list[Obj]:
    require("kubectl")
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return kustomize(K8S / "base")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s with the overlay's secrets.env filled in as an operator would."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    example = (copy / "overlays" / "production" / "secrets.env.example").read_text()
    filled = example.replace("EMOSTREAM_TOKEN=", "EMOSTREAM_TOKEN=test-stream-token")
    filled = filled.replace("EMOSTREAM_ADMIN_TOKEN=", "EMOSTREAM_ADMIN_TOKEN=test-admin-token")
    (copy / "overlays" / "production" / "secrets.env").write_text(filled)
    return copy


@pytest.fixture(scope="module")
def production(tree: Path) -> list[Obj]:
    return kustomize(tree / "overlays" / "production")


@pytest.fixture(params=["base", "production"])
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    objects: list[Obj] = request.getfixturevalue(request.param)
    return objects


def one(objects: list[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[Obj]) -> Obj:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: Obj = containers[0]
    return c


def container_env(objects: list[Obj]) -> dict[str, str]:
    """The server container's environment as the kubelet would build it."""
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    c = container(objects)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(by_name[("ConfigMap", source["configMapRef"]["name"])]["data"])
        else:
            ref = source["secretRef"]
            secret = by_name.get(("Secret", ref["name"]))
            if secret is None:
                assert ref.get("optional") is True, f"Secret {ref['name']} is not rendered"
                continue
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    env.update({e["name"]: e["value"] for e in c.get("env", [])})
    return env


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], Settings]:
    def build(env: dict[str, str]) -> Settings:
        for key in [k for k in os.environ if k.startswith("EMOSTREAM_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings()

    return build


# Rendering and schemas


def test_base_and_overlay_render_every_object(base: list[Obj], production: list[Obj]) -> None:
    kinds = {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceAccount",
    }
    assert kinds <= {o["kind"] for o in base}
    assert kinds | {"Secret", "Namespace"} <= {o["kind"] for o in production}
    namespaced = [o for o in production if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"emostream"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: list[Obj], version: str
) -> None:
    for obj in rendered:
        # strict: a property the schema does not know is an error, not ignored
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_catches_a_misspelt_property(base: list[Obj]) -> None:
    deployment = json.loads(json.dumps(one(base, "Deployment")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    probe = json.loads(json.dumps(one(base, "Deployment")))
    probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "5"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(probe, K8S_VERSIONS[-1], strict=True)


def test_selectors_match_the_pods(rendered: list[Obj]) -> None:
    labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(one(rendered, "Deployment")["spec"]["selector"]["matchLabels"])
    assert selects(one(rendered, "Service")["spec"]["selector"])
    assert selects(one(rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects(one(rendered, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"])
    for spread in one(rendered, "Deployment")["spec"]["template"]["spec"][
        "topologySpreadConstraints"
    ]:
        assert selects(spread["labelSelector"]["matchLabels"])


# The pod


def test_probes_use_the_servers_health_endpoints(rendered: list[Obj]) -> None:
    c = container(rendered)
    port = c["ports"][0]
    assert port["containerPort"] == 8000 and port["name"] == "http"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The model loads before the server answers at all: the startup probe allows a minute.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    # A liveness failure restarts the pod and ends its streams: it must be tolerant.
    assert c["livenessProbe"]["failureThreshold"] >= 3


def test_grace_period_covers_the_servers_drain(rendered: list[Obj], settings_from: Any) -> None:
    """preStop, then SIGTERM: the drain and uvicorn's own shutdown must finish in the grace."""
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    settings = settings_from(container_env(rendered))
    config = uvicorn_config(Starlette(), settings, "0.0.0.0", 8000)
    assert config.timeout_graceful_shutdown is not None
    pre_stop_s = container(rendered)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop_s >= 3, "endpoint removal needs a few seconds to reach every proxy"
    needed_s = pre_stop_s + settings.shutdown_timeout_s + config.timeout_graceful_shutdown
    assert pod["terminationGracePeriodSeconds"] >= needed_s + 2
    # A draining server no longer listens: liveness must not restart it meanwhile.
    live = container(rendered)["livenessProbe"]
    drain_s = settings.shutdown_timeout_s + config.timeout_graceful_shutdown
    assert live["periodSeconds"] * live["failureThreshold"] > drain_s
    # and a rolling update never has fewer ready pods than wanted
    strategy = one(rendered, "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_settings_in_the_configmap_are_accepted_by_the_server(
    rendered: list[Obj], settings_from: Any
) -> None:
    env = container_env(rendered)
    settings = settings_from(env)
    assert settings.workers == int(env["EMOSTREAM_WORKERS"])
    assert env["ORT_DISABLE_TELEMETRY"] == "1"


def test_service_links_are_off_because_the_server_refuses_unknown_settings(
    rendered: list[Obj], settings_from: Any
) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    # What the kubelet would add for the Service named "emostream" if links were on:
    service = one(rendered, "Service")["metadata"]["name"].upper()
    links = {f"{service}_SERVICE_HOST": "10.0.0.1", f"{service}_PORT": "tcp://10.0.0.1:8000"}
    with pytest.raises(ValidationError, match="EMOSTREAM_PORT"):
        settings_from({**container_env(rendered), **links})


def test_tokens_come_from_a_secret(production: list[Obj], settings_from: Any) -> None:
    secret = one(production, "Secret")
    ref = [s["secretRef"] for s in container(production)["envFrom"] if "secretRef" in s]
    assert [r["name"] for r in ref] == [secret["metadata"]["name"]]
    assert set(secret["data"]) == {"EMOSTREAM_TOKEN", "EMOSTREAM_ADMIN_TOKEN"}
    settings = settings_from(container_env(production))
    assert settings.token is not None and settings.token.get_secret_value() == "test-stream-token"
    # no token in any ConfigMap or in the pod spec itself
    for obj in production:
        if obj["kind"] != "Secret":
            assert "test-stream-token" not in json.dumps(obj)


def test_pod_runs_unprivileged_as_the_images_user(rendered: list[Obj]) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    runtime = dockerfile.parse(REPO / "Dockerfile").stage("runtime")
    uid, _, gid = runtime.all("USER")[-1].value.partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    account = one(rendered, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    sc = container(rendered)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # the only writable path is a small in-memory /tmp
    mounts = {m["mountPath"]: m["name"] for m in container(rendered)["volumeMounts"]}
    assert list(mounts) == ["/tmp"]
    volume = {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]]
    assert volume["emptyDir"]["medium"] == "Memory"


def test_overlay_namespace_enforces_the_restricted_pod_standard(production: list[Obj]) -> None:
    labels = one(production, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_image_tag_names_the_model_it_bakes_in(rendered: list[Obj]) -> None:
    image = container(rendered)["image"]
    name, _, tag = image.rpartition(":")
    assert name and tag != "latest"
    release, sep, model_version = tag.partition("-model-")
    assert sep and re.fullmatch(r"\d+\.\d+\.\d+", release), tag
    manifest = json.loads((REPO / "models" / "default" / "manifest.json").read_text())
    assert model_version == manifest["version"], (
        f"the image built from this tree bakes in model {manifest['version']}: update the "
        "tag in deploy/k8s (base and overlay) with the model"
    )


def test_pods_spread_across_nodes(rendered: list[Obj]) -> None:
    spread = one(rendered, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_key = {s["topologyKey"]: s for s in spread}
    assert by_key["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_key["kubernetes.io/hostname"]["maxSkew"] == 1
    assert "topology.kubernetes.io/zone" in by_key


# Sizing from BENCHMARKS.md


def _benchmark_figures() -> dict[str, float]:
    text = BENCHMARKS.read_text()
    # §3 "Admission": the bundled model, 2 workers x 1 thread, queue_size 64, no skip
    rows = re.findall(
        r"^\| models/default, 2 × 1 \| (\d+) \| 64 \| ([\d.]+) \| 0 \| ([\d.]+) \|$",
        text,
        re.MULTILINE,
    )
    assert rows, "BENCHMARKS.md lost the admission table the pod sizing is taken from"
    streams, _, cores = max(rows, key=lambda r: int(r[0]))
    # §3 bundled model table: the largest RSS at any K
    section = text.split("### The bundled model", 1)[1].split("###", 1)[0]
    rss = [int(r) for r in re.findall(r"^\|(?:[^|]*\|){9} (\d+) \| (?:yes|no) \|$", section, re.M)]
    assert rss, "BENCHMARKS.md lost the bundled model's live-capacity table"
    idle_kb = re.search(r"\+[\d.]+ MiB → \*\*(\d+) KB each\*\*", text)
    assert idle_kb, "BENCHMARKS.md lost the idle-connection memory figure"
    return {
        "streams": float(streams),
        "cores": float(cores),
        "rss_mb": float(max(rss)),
        "idle_kb": float(idle_kb.group(1)),
    }


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _mib(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_resources_fit_the_benchmarked_load(rendered: list[Obj], settings_from: Any) -> None:
    figures = _benchmark_figures()
    settings = settings_from(container_env(rendered))
    resources = container(rendered)["resources"]
    # CPU: the request holds the measured load at the benchmarked stream count; the limit
    # leaves every inference worker and the event loop a core.
    assert _cpu(resources["requests"]["cpu"]) >= figures["cores"]
    assert _cpu(resources["limits"]["cpu"]) >= settings.workers * settings.intra_op_threads + 1
    # Memory: peak RSS under load plus every allowed connection idle, with room to spare.
    needed_mib = (
        figures["rss_mb"] * 1e6 + settings.max_connections * figures["idle_kb"] * 1e3
    ) / 2**20
    assert _mib(resources["requests"]["memory"]) >= 1.5 * needed_mib
    assert _mib(resources["limits"]["memory"]) >= 2 * _mib(resources["requests"]["memory"])


def test_autoscaler_targets_fit_the_benchmarks(production: list[Obj]) -> None:
    figures = _benchmark_figures()
    hpa = one(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(production, "Deployment")["metadata"]["name"],
    }
    # the Deployment leaves the replica count to the autoscaler
    assert "replicas" not in one(production, "Deployment")["spec"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    pods = metrics["Pods"]["pods"]
    assert pods["metric"]["name"] == "emostream_open_connections"
    per_pod = float(pods["target"]["averageValue"])
    # scale out before a pod reaches the stream count measured without a skip
    assert 0 < per_pod < figures["streams"]
    # at least two replicas, and the budget lets at most one be evicted at a time
    assert hpa["spec"]["minReplicas"] >= 2
    assert one(production, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_session_metric_is_the_one_the_server_exports() -> None:
    from server.metrics import Metrics

    names = {m.name for m in Metrics().registry.collect()}
    assert "emostream_open_connections" in names


# Traffic


def test_network_policy_admits_only_the_ingress_and_allows_no_egress(
    rendered: list[Obj],
) -> None:
    policy = one(rendered, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy.get("egress", []) == []
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in sources
    }
    assert "ingress-nginx" in namespaces
    assert namespaces <= {"ingress-nginx", "monitoring"}
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert all("podSelector" in p and "namespaceSelector" in p for p in rule["from"])


def test_ingress_is_tls_with_websocket_friendly_timeouts(
    production: list[Obj], settings_from: Any
) -> None:
    ingress = one(production, "Ingress")
    notes = ingress["metadata"]["annotations"]
    settings = settings_from(container_env(production))
    # a proxy read timeout shorter than the ping cycle would cut quiet streams
    ping_cycle_s = settings.ws_ping_interval_s + settings.ws_ping_timeout_s
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > ping_cycle_s
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) > ping_cycle_s
    body = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m")
    assert int(body[:-1]) * 2**20 == settings.max_upload_bytes + 2**20
    assert notes["cert-manager.io/cluster-issuer"]
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert [h for tls in ingress["spec"]["tls"] for h in tls["hosts"]] == hosts
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == one(production, "Service")["metadata"]["name"]
    # the allowed origin is the ingress host over https, and the server knows its hosts
    assert settings.allowed_origins == [f"https://{hosts[0]}"]
    assert settings.allowed_hosts == hosts


def test_the_ingress_keeps_no_access_log(rendered: list[Obj]) -> None:
    # ?token= would land in the controller's logs with the request line (issue 28).
    notes = one(rendered, "Ingress")["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/enable-access-log"] == "false"


def test_metrics_answer_prometheus_but_not_the_ingress(
    production: list[Obj], base: list[Obj], settings_from: Any, tiny_model_dir: Path
) -> None:
    assert settings_from(container_env(base)).metrics_networks == Settings().metrics_networks
    settings = settings_from(container_env(production))
    scrape_range = ipaddress.ip_network("10.244.0.0/16")  # the pod network, as in settings.env
    assert scrape_range in settings.metrics_networks
    assert scrape_range in settings.trusted_proxies  # the ingress controller is in it too
    app = create_app(settings.model_copy(update={"model_dir": tiny_model_dir}))
    with TestClient(app, client=("10.244.7.12", 40000)) as pod:
        # Prometheus asks directly; a request through the Ingress carries its forwarding headers.
        assert pod.get("/metrics").status_code == 200
        proxied = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}
        assert pod.get("/metrics", headers=proxied).status_code == 404
    with TestClient(app, client=("192.0.2.50", 40000)) as outsider:
        assert outsider.get("/metrics").status_code == 404


def test_the_pods_send_the_security_headers_the_caddyfile_sets(
    production: list[Obj], settings_from: Any, tiny_model_dir: Path
) -> None:
    # No Caddy on Kubernetes: the page's policy comes from the server, through the Ingress.
    settings = settings_from(container_env(production))
    host = settings.allowed_hosts[0]
    app = create_app(settings.model_copy(update={"model_dir": tiny_model_dir}))
    with TestClient(app, base_url=f"https://{host}") as client:
        headers = client.get("/", headers={"X-Forwarded-Proto": "https"}).headers
    caddyfile = (REPO / "caddy" / "Caddyfile").read_text()
    for name in ("Referrer-Policy", "X-Content-Type-Options", "X-Frame-Options"):
        caddy_value = re.search(rf"^\s*{name} (.+)$", caddyfile, re.MULTILINE)
        assert caddy_value is not None, name
        assert headers[name] == caddy_value.group(1).strip('"'), name
    assert "microphone=(self)" in headers["Permissions-Policy"]
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert f"wss://{host}" in policy


def test_secrets_env_is_never_committed() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "deploy/k8s/overlays/production/secrets.env" in ignored
    # and the image's build context (an allow-list) does not take deploy/ at all
    allowed = (REPO / ".dockerignore").read_text().splitlines()
    assert not any(line.startswith("!deploy") for line in allowed)
