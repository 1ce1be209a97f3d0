"""docker-compose.yml agrees with the code: services, commands, variables, health checks."""

from __future__ import annotations

import importlib.util

import msgspec
import pytest

from devtools.processes import ROOT
from tests.ops.compose import load, variables

APP_SERVICES = ("migrate", "auth", "relay", "canvas", "gateway")
# Read by a library rather than by our settings objects.
LIBRARY_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}  # prometheus_client's multiprocess mode


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


SERVE = ["python", "-m", "shared.serve"]  # uvicorn's command line (shared/serve.py)


def _module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    if command[:3] == SERVE:
        return command[3].split(":")[0]
    return command[2]


def test_every_service_is_present(compose: dict) -> None:
    assert set(compose["services"]) == {"postgres", "redis", *APP_SERVICES}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_commands_start_real_modules(compose: dict, name: str) -> None:
    command = compose["services"][name]["command"]
    module = _module_of(command)
    assert importlib.util.find_spec(module) is not None, f"{name} runs {module}, which does not exist"
    if command[:3] == SERVE:
        attr = command[3].split(":")[1]
        assert hasattr(importlib.import_module(module), attr)


def test_only_the_gateway_publishes_a_port(compose: dict) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"gateway"}


def test_scaled_services_have_no_fixed_names_or_ports(compose: dict) -> None:
    for name in ("auth", "canvas"):
        svc = compose["services"][name]
        assert "container_name" not in svc
        assert "ports" not in svc


def test_secrets_are_required_not_defaulted(compose: dict) -> None:
    env = compose["x-app"]["environment"]
    assert ("INTERNAL_SECRET", "?") in variables(env["INTERNAL_SECRET"])
    assert ("POSTGRES_PASSWORD", "?") in variables(env["AUTH_DATABASE_URL"])
    assert env["APP_ENV"] == "production"


def test_every_variable_is_a_real_setting(compose: dict) -> None:
    from gateway.settings import GatewaySettings
    from services.auth.settings import AuthSettings
    from services.canvas.settings import CanvasSettings

    known: set[str] = set()
    for cls, prefix in ((AuthSettings, "AUTH_"), (CanvasSettings, "CANVAS_"), (GatewaySettings, "GATEWAY_")):
        shared = getattr(cls, "__shared_fields__", frozenset())
        for field in msgspec.structs.fields(cls):
            known.add(field.name.upper() if field.name in shared else f"{prefix}{field.name}".upper())
    known |= LIBRARY_VARIABLES
    for name in compose["x-app"]["environment"]:
        assert name in known, f"docker-compose.yml sets {name}, which no settings object reads"


def test_metrics_add_up_every_worker(compose: dict) -> None:
    app = compose["x-app"]
    directory = app["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert directory in app["tmpfs"], "the multiprocess directory must start empty in every container start"


def test_the_image_makes_the_metrics_tmpfs_writable_on_every_start(compose: dict) -> None:
    """On every start after a container's first (`docker kill` + `start`, `restart`), Docker (runc)
    gives a tmpfs the mode of the directory beneath it; one it had to create is root's 0755 and the
    app user's workers died with PermissionError, the replica unhealthy for good. The image's runtime
    stage creates the mount point world-writable with the sticky bit (checked by hand under Docker,
    and by `make test-compose`'s kill step)."""
    directory = compose["x-app"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    runtime = (ROOT / "Dockerfile").read_text().split(" AS runtime", 1)[1]
    assert f"install -d -m 1777 {directory}" in runtime
    assert "USER app" in runtime


def test_dependencies_wait_for_health_and_migrations(compose: dict) -> None:
    services = compose["services"]
    for name in ("auth", "relay", "canvas"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"  # stopped after its users
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for dep in services["gateway"]["depends_on"].values():
        assert dep["condition"] == "service_healthy"
    assert set(services["gateway"]["depends_on"]) == {"redis", "auth", "canvas"}
    for name in ("postgres", "redis", "auth", "canvas", "gateway"):
        assert services[name]["healthcheck"]["test"]


@pytest.mark.parametrize("name", ["auth", "canvas", "gateway"])
def test_uvicorn_logs_through_the_log_config(compose: dict, name: str) -> None:
    command = compose["services"][name]["command"]
    config = command[command.index("--log-config") + 1]
    assert (ROOT / config).is_file()


def test_redis_persists_the_stream(compose: dict) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])
