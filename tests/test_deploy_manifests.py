"""Offline checks of the deployment files: deploy/k8s (strict schema validation, the kustomization, the
Deployment's safety invariants, references between the manifests) and deploy/Dockerfile (a lint without
Docker: how gunicorn is started, the user, the base image, the install, the build context)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.config import DefaultConfig
from tests.live import nginx_binary

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The newest Kubernetes release kubernetes-validate bundles schemas for; a supported release today.
# Raise it when the package is upgraded to bundle a newer one.
KUBERNETES_VERSION = "1.37.0"

NAME = "legraise-triage"
NAMESPACE = "legraise-triage"
KINDS = ["ConfigMap", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
KINDS += ["NetworkPolicy", "Deployment", "Service", "NetworkPolicy"]  # and the replay store's (redis.yaml)
PROXY = "proxy"  # the pod's entry point: nginx in front of gunicorn on loopback
# Secrets the manifests may reference without defining: created by the operator, never committed.
EXTERNAL_SECRETS = {"legraise-triage-credentials"}
STOP_MARGIN_SECONDS = 5


# ---------------------------------------------------------------- Kubernetes manifests


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.iterdir() if p.suffix in {".yaml", ".yml"} and p.stem != "kustomization")


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


@cache
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource in deploy/k8s by (kind, name); a duplicate fails here."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in manifest_files():
        for doc in load_docs(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice ({path.name})"
            found[key] = doc
    return found


def one(kind: str) -> dict[str, Any]:
    """The service's own resource of this kind (the replay store's, redis.yaml, has a name of its own)."""
    docs = [doc for (k, name), doc in resources().items() if k == kind and name == NAME]
    assert len(docs) == 1, f"expected one {kind}, found {len(docs)}"
    return docs[0]


def pod_spec() -> dict[str, Any]:
    return one("Deployment")["spec"]["template"]["spec"]


def containers() -> dict[str, dict[str, Any]]:
    found = {c["name"]: c for c in pod_spec()["containers"]}
    assert set(found) == {NAME, PROXY}, "the checks below assume the app and its proxy"
    return found


def container() -> dict[str, Any]:
    """The app's container (gunicorn)."""
    return containers()[NAME]


def proxy() -> dict[str, Any]:
    return containers()[PROXY]


def effective_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env (which wins)."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(resources()[("ConfigMap", source["configMapRef"]["name"])].get("data", {}))
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a Service's plain map) matches labels."""
    if not selector:
        return False  # an empty selector matches everything: never what these manifests mean
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_for_kubernetes(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            where = "/".join(str(p) for p in getattr(exc, "path", []))
            pytest.fail(f"{path.name} {doc.get('kind')}: {where}: {getattr(exc, 'message', exc)}")


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("PodDisruptionBudget", lambda d: d["spec"].update(maxUnavailabel=d["spec"].pop("maxUnavailable"))),
        ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(privilegd=1)),
        ("ConfigMap", lambda d: d["data"].update(WEB_CONCURRENCY=2)),
    ],
    ids=["typo", "nested-typo", "number-in-configmap"],
)
def test_strict_validation_rejects_mistakes(kind: str, mutate: Any) -> None:
    """The validator is not vacuous: the mistakes it exists for are caught in these very manifests."""
    doc = copy.deepcopy(next(doc for (k, _), doc in resources().items() if k == kind))
    mutate(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_expected_resources_are_there() -> None:
    kinds = sorted(kind for kind, _ in resources())
    assert sorted(KINDS) == kinds
    for doc in resources().values():
        labels = doc["metadata"]["labels"]
        assert NAME in {labels["app.kubernetes.io/name"], labels.get("app.kubernetes.io/part-of")}
        # All in one namespace, never `default` (checkov CKV_K8S_21); an overlay's `namespace:` moves them.
        assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}: namespace {NAMESPACE}"


def test_kustomization_lists_exactly_the_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization.get("resources", [])
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert sorted(listed) == [p.name for p in manifest_files()]
    # commonLabels is deprecated and also rewrites selectors, which the API server refuses to change
    # on an existing Deployment; the labels are written in each manifest instead.
    assert "commonLabels" not in kustomization
    for entry in kustomization.get("labels", []):
        assert entry.get("includeSelectors") is not True


def test_probes_use_the_health_endpoints() -> None:
    c = container()
    (proxy_port,) = proxy()["ports"]
    expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        assert c[probe]["httpGet"]["path"] == path, probe
        # Through the proxy, by number (a port name is looked up among the probed container's own ports).
        assert c[probe]["httpGet"]["port"] == proxy_port["containerPort"], f"{probe} does not go through the proxy"
    for probe in ("livenessProbe", "readinessProbe"):
        assert proxy()[probe]["tcpSocket"]["port"] in {proxy_port["name"], proxy_port["containerPort"]}
    # Liveness must be slower to give up than readiness: a busy pod is taken out of rotation, not restarted.
    live, ready = c["livenessProbe"], c["readinessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"]


def test_pod_runs_unprivileged() -> None:
    spec = pod_spec()
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    assert pod["runAsGroup"] > 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for c in containers().values():
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")
        assert not sc.get("privileged")
        assert sc.get("runAsUser", pod["runAsUser"]) > 0


def test_termination_grace_covers_prestop_and_gunicorn_graceful_timeout() -> None:
    # The proxy waits the same before it quits gracefully (nginx's QUIT; SIGTERM would drop requests).
    stop = " ".join(proxy()["lifecycle"]["preStop"]["exec"]["command"])
    assert "sleep 5;" in stop and "nginx -s quit" in stop
    env = effective_env(container())
    assert "GUNICORN_GRACEFUL_TIMEOUT" in env, "set it explicitly so the budget below is the one in force"
    graceful = int(env["GUNICORN_GRACEFUL_TIMEOUT"])
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop > 0
    assert pod_spec()["terminationGracePeriodSeconds"] >= pre_stop + graceful + STOP_MARGIN_SECONDS
    # gunicorn's worker timeout is a heartbeat; it should not be shorter than the graceful stop window.
    assert int(env["GUNICORN_TIMEOUT"]) >= graceful


def test_resources_are_set() -> None:
    res = container()["resources"]
    assert res["limits"]["memory"], "a memory limit: a leak ends in an OOM kill of this container only"
    assert res["requests"]["memory"]
    assert res["requests"]["cpu"], "the HPA's CPU utilization is measured against the request"
    mib = {"Mi": 1, "Gi": 1024}

    def to_mib(q: str) -> int:
        return int(q[:-2]) * mib[q[-2:]]

    assert to_mib(res["limits"]["memory"]) >= to_mib(res["requests"]["memory"])

    def to_millicores(q: str | int) -> int:
        return int(q[:-1]) if isinstance(q, str) and q.endswith("m") else int(float(q) * 1000)

    # The CPU limit is one core per gunicorn worker: a worker runs Python one thread at a time, so the
    # CFS quota is not reached under normal load (no throttling), and a runaway cannot take the node.
    workers = int(effective_env(container())["WEB_CONCURRENCY"])
    assert to_millicores(res["limits"]["cpu"]) == 1000 * workers, "CPU limit: one core per WEB_CONCURRENCY worker"
    assert to_millicores(res["limits"]["cpu"]) >= to_millicores(res["requests"]["cpu"])
    # Memory-backed emptyDirs count against the memory limit: they must leave room for the workers.
    in_memory = [v["emptyDir"] for v in pod_spec()["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
    assert all("sizeLimit" in e for e in in_memory), "an unbounded tmpfs can use the whole memory limit"
    limits = sum(to_mib(c["resources"]["limits"]["memory"]) for c in containers().values())
    assert sum(to_mib(e["sizeLimit"]) for e in in_memory) <= limits // 2
    for c in containers().values():
        assert to_millicores(c["resources"]["limits"]["cpu"]) >= to_millicores(c["resources"]["requests"]["cpu"])


def _references(node: Any) -> Iterator[tuple[str, str, bool]]:
    """(kind, name, optional) for every ConfigMap and Secret a pod spec refers to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"configMapRef", "configMapKeyRef"}:
                yield "ConfigMap", value["name"], bool(value.get("optional"))
            elif key in {"secretRef", "secretKeyRef"}:
                yield "Secret", value["name"], bool(value.get("optional"))
            elif key == "configMap" and "name" in value:
                yield "ConfigMap", value["name"], bool(value.get("optional"))
            elif key == "secret" and "secretName" in value:
                yield "Secret", value["secretName"], bool(value.get("optional"))
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_every_configmap_and_secret_reference_resolves() -> None:
    refs = list(_references(pod_spec()))
    assert ("ConfigMap", "legraise-triage-config", False) in refs
    for kind, name, optional in refs:
        if (kind, name) in resources():
            continue
        # Only the operator-created credentials Secret may be missing from the manifests, and the pod
        # must not depend on it to be created (the app names the missing file when it starts), except
        # for the shared replay store: without it each pod would accept a token another pod has seen.
        assert kind == "Secret" and name in EXTERNAL_SECRETS, f"{kind} {name} is referenced but not defined"
        assert optional or _required_env(name) == ["TRIAGE_REPLAY_STORE"], f"Secret {name}: optional: true"


def _required_env(secret: str) -> list[str]:
    return [
        var["name"]
        for var in container().get("env", [])
        if var.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == secret
        and not var["valueFrom"]["secretKeyRef"].get("optional")
    ]


def test_file_settings_point_into_mounted_volumes() -> None:
    c = container()
    env = effective_env(c)
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}

    def mount_of(path: str) -> dict[str, Any]:
        parent = next((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), None)
        assert parent, f"{path} is on no volume (the root filesystem is read-only)"
        return mounts[parent]

    # Credentials: read-only, from the Secret volume.
    for setting in ("TRIAGE_API_KEYS_FILE", "TRIAGE_CDS_TRUST_FILE"):
        mount = mount_of(env[setting])
        assert mount["readOnly"] is True
        volume = volumes[mount["name"]]
        assert volume["secret"]["secretName"] in EXTERNAL_SECRETS
        items = volume["secret"].get("items")
        if items is not None:  # with items, only the listed keys appear in the directory
            assert Path(env[setting]).name in {i["path"] for i in items}
        assert volume["secret"].get("defaultMode", 0o644) & 0o007 == 0, "credentials readable by others"
    # Scratch space: writable, memory-backed.
    for path in ("/tmp", env["PROMETHEUS_MULTIPROC_DIR"]):
        mount = mount_of(path)
        assert not mount.get("readOnly")
        assert volumes[mount["name"]]["emptyDir"]["medium"] == "Memory"


def test_triage_settings_are_real_settings() -> None:
    """A TRIAGE_* variable the app does not know is silently ignored: catch misspelt names here."""
    env = effective_env(container())
    triage = sorted(name for name in env if name.startswith("TRIAGE_"))
    assert triage
    unknown = [name for name in triage if not hasattr(DefaultConfig, name.removeprefix("TRIAGE_"))]
    assert not unknown, f"not settings of service/config.py: {unknown}"
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT"):
        assert int(env[name]) > 0, name


def test_ports_agree() -> None:
    """Issue 20, item 9: gunicorn is reachable only through its proxy, which owns the pod's one port."""
    assert "ports" not in container(), "gunicorn must not be a port of the pod"
    bind = effective_env(container())["BIND"]
    host, gunicorn_port = bind.rsplit(":", 1)
    assert host == "127.0.0.1", "gunicorn listens on the pod's loopback, behind the proxy"
    assert f"EXPOSE {gunicorn_port}" in {f"{k} {v}" for k, v in final_stage()}
    (port,) = proxy()["ports"]
    assert port["name"] == "http"
    number = port["containerPort"]
    (svc_port,) = one("Service")["spec"]["ports"]
    assert svc_port["targetPort"] in {port["name"], number}
    for rule in one("NetworkPolicy")["spec"]["ingress"]:
        assert {p["port"] for p in rule["ports"]} <= {port["name"], number}
    conf = proxy_configmap()["data"]["nginx.conf"]
    assert f"listen {number};" in conf
    assert f"server {bind} " in conf, "the proxy's upstream is gunicorn's BIND"


def proxy_configmap() -> dict[str, Any]:
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    (mount,) = [m for m in proxy()["volumeMounts"] if m["mountPath"] == "/etc/legraise-proxy"]
    assert proxy()["command"][:3] == ["nginx", "-c", "/etc/legraise-proxy/nginx.conf"]
    return resources()[("ConfigMap", volumes[mount["name"]]["configMap"]["name"])]


def test_proxy_configmap_is_rendered_from_the_nginx_template() -> None:
    spec = importlib.util.spec_from_file_location("render", ROOT / "deploy" / "nginx" / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    committed = (K8S / "proxy-configmap.yaml").read_text(encoding="utf-8")
    assert committed == render.pod_configmap(), "stale: run python3 deploy/nginx/render.py --pod"
    assert proxy_configmap()["data"]["nginx.conf"] == render.render(render.pod_values())


@pytest.mark.live
def test_proxy_config_passes_nginx_own_check(tmp_path: Path) -> None:
    binary = nginx_binary()
    conf = proxy_configmap()["data"]["nginx.conf"].replace("/tmp", str(tmp_path))
    (tmp_path / "nginx.conf").write_text(conf, encoding="utf-8")
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def test_selectors_match_the_deployment_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], labels)
    assert selects(one("Service")["spec"]["selector"], labels)
    assert selects(one("PodDisruptionBudget")["spec"]["selector"], labels)
    assert selects(one("NetworkPolicy")["spec"]["podSelector"], labels)
    for constraint in pod_spec().get("topologySpreadConstraints", []):
        assert selects(constraint["labelSelector"], labels)
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", NAME)
    assert deployment["metadata"]["name"] == NAME


def test_selector_check_can_fail() -> None:
    labels = {"app.kubernetes.io/name": NAME}
    assert not selects({"matchLabels": {"app.kubernetes.io/name": "other"}}, labels)
    assert not selects({}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)


def test_a_pod_keeps_serving_through_disruptions() -> None:
    hpa, pdb = one("HorizontalPodAutoscaler")["spec"], one("PodDisruptionBudget")["spec"]
    assert hpa["minReplicas"] >= 2
    assert hpa["maxReplicas"] >= hpa["minReplicas"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    rolling = one("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    assert found, "no FROM"
    return found


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY/ADD arguments as (flags, sources, destination)."""
    words = exec_form(args) or shlex.split(args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def test_entrypoint_runs_gunicorn_as_pid_1() -> None:
    stage = final_stage()
    entrypoints = [args for kw, args in stage if kw == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the final stage"
    argv = exec_form(entrypoints[-1])
    assert argv, "ENTRYPOINT must be in exec form (a JSON array): a shell would be PID 1 and swallow SIGTERM"
    assert argv[0] in {"gunicorn", "/opt/venv/bin/gunicorn"}
    assert argv[argv.index("-c") + 1] == "/app/deploy/gunicorn.conf.py"
    assert argv[-1] == "service:create_app()"
    assert not {"sh", "bash", "/bin/sh", "/bin/bash"} & set(argv)
    # The config file given to gunicorn is the one copied into the image.
    copies = [copy_args(args) for kw, args in stage if kw == "COPY"]
    assert (["deploy/gunicorn.conf.py"], "/app/deploy/gunicorn.conf.py") in [(s, d) for f, s, d in copies]
    # A shell-form CMD would be appended to the ENTRYPOINT as arguments.
    assert all(exec_form(args) is not None for kw, args in stage if kw == "CMD")


def test_runs_as_a_numeric_non_root_user_before_the_entrypoint() -> None:
    stage = final_stage()
    keywords = [kw for kw, _ in stage]
    users = [(i, args) for i, (kw, args) in enumerate(stage) if kw == "USER"]
    assert users, "no USER in the final stage: the container would run as root"
    position, user = users[-1]
    assert position < keywords.index("ENTRYPOINT")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes can check runAsNonRoot"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    pod = pod_spec()["securityContext"]
    assert int(uid) == pod["runAsUser"]
    if gid:
        assert int(gid) == pod["runAsGroup"]


def test_base_images_are_pinned() -> None:
    defaults: dict[str, str] = {}
    for kw, args in dockerfile_instructions():
        if kw == "FROM":
            break
        if kw == "ARG":
            name, _, default = args.partition("=")
            defaults[name.strip()] = default.strip().strip("\"'")
    stage_names: set[str] = set()
    bases = []
    for stage in stages():
        words = stage[0][1].split()
        words = [w for w in words if not w.startswith("--")]  # --platform=...
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), words[0])
        assert "$" not in image, f"FROM {words[0]}: a variable without a default in a global ARG"
        if image not in stage_names:
            bases.append(image)
        if len(words) == 3 and words[1].upper() == "AS":
            stage_names.add(words[2])
    assert bases
    for image in bases:
        name, _, digest = image.partition("@")
        tag = name.rsplit("/", 1)[-1].partition(":")[2]
        assert digest.startswith("sha256:") or (tag and tag != "latest"), f"{image}: no tag, or latest"
        assert digest or re.match(r"\d+\.\d+", tag), f"{image}: pin at least the minor version"
    assert len(set(bases)) == 1, "the virtualenv built in one stage needs the same Python in the other"


def test_installs_runtime_dependencies_with_the_constraints() -> None:
    runs = [args for kw, args in dockerfile_instructions() if kw == "RUN" and re.search(r"\bpip\b.*\binstall\b", args)]
    assert runs, "no pip install"
    for args in runs:
        words = shlex.split(args)
        pairs = {" ".join(pair) for pair in pairwise(words)} | set(words)
        constrained = pairs & {"-c constraints.txt", "--constraint constraints.txt", "--constraint=constraints.txt"}
        assert constrained, f"RUN {args}: install with -c constraints.txt"
        assert "--no-cache-dir" in words
        assert not any("[test]" in w for w in words), "the test extra has no place in the image"
        assert "-e" not in words and "--editable" not in words
    copied = [src for kw, args in dockerfile_instructions() if kw == "COPY" for src in copy_args(args)[1]]
    assert "constraints.txt" in copied


def test_no_add_of_remote_sources() -> None:
    for kw, args in dockerfile_instructions():
        if kw == "ADD":
            _, sources, _ = copy_args(args)
            remote = [s for s in sources if re.match(r"^(https?|git)://|^git@|\.git(#|$)", s)]
            assert not remote, f"ADD {args}: fetch remote files in a RUN step with a checksum, or not at all"


def test_no_secrets_baked_in() -> None:
    for kw, args in dockerfile_instructions():
        if kw in {"ENV", "ARG"}:
            assert not re.search(r"(?i)(password|secret|token|api_?key)\w*\s*=", args), f"{kw} {args}"


# -- the build context: .dockerignore


@cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, pattern) in file order, with Docker's syntax: *, ?, [...], ** and ! for exceptions."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((exclude, re.compile(_glob_to_regex(pattern))))
    return rules


def _glob_to_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith(("^", "!")) else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out + r"\Z"


def in_build_context(relative: str) -> bool:
    """Whether Docker sends this path: the last rule matching it or one of its parent directories wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for exclude, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            excluded = exclude
    return not excluded


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    checked = 0
    for kw, args in dockerfile_instructions():
        if kw not in {"COPY", "ADD"}:
            continue
        flags, sources, _ = copy_args(args)
        if "from" in flags:
            continue  # from another stage
        for source in sources:
            matches = sorted(ROOT.glob(source))
            assert matches, f"{kw} {source}: no such file in the repository"
            for match in matches:
                files = [match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()]
                for path in files:
                    relative = path.relative_to(ROOT).as_posix()
                    if "__pycache__" in relative or relative.endswith(".pyc"):
                        continue
                    assert in_build_context(relative), f"{relative} is copied but .dockerignore leaves it out"
                    checked += 1
    # Non-editable install: the package data (knowledge base YAML) must reach the build too.
    assert in_build_context("service/knowledge/rules.yaml")
    assert checked > 10


def test_local_state_stays_out_of_the_build_context() -> None:
    for relative in (
        ".venv/bin/python",
        ".venv-scan/bin/checkov",
        ".git/config",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "tests/test_deploy_manifests.py",
        "legraise_triage.egg-info/PKG-INFO",
        "service/__pycache__/app.cpython-311.pyc",
        "deploy/k8s/deployment.yaml",
        "api-keys.yaml",
    ):
        assert not in_build_context(relative), f"{relative} would be sent to the Docker daemon"


def test_final_stage_environment() -> None:
    env = " ".join(args for kw, args in final_stage() if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "the root filesystem is read-only"
    assert "PYTHONUNBUFFERED=1" in env, "log lines must not wait in a buffer"
    assert ("HEALTHCHECK", "NONE") in final_stage()


@pytest.mark.scan
def test_dockerfile_passes_hadolint() -> None:
    """Dockerfile best practices (pinning, exec form, no root, ...), linted without a Docker engine."""
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
