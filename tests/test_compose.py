"""Static checks of the container files: docker-compose.yml, Dockerfile, .dockerignore and ops/docker/.

No Docker engine runs on the development machines or in CI, so most of this is static: only
``test_dockerfile_build`` builds the image, when ``docker info`` reaches an engine, and is skipped otherwise.
``docker-compose config`` validates and resolves the compose file without an engine; the tests that need it
are skipped when the binary is missing. The resolved config is checked as text (service blocks at two
spaces of indentation, keys sorted), so no YAML library is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
OPS_DOCKER = ROOT / "ops" / "docker"

SERVICES = {
    "etcd1",
    "etcd2",
    "etcd3",
    "node1",
    "node2",
    "node3",
    "pgbouncer",
    "redis",
    "jaeger",
    "gateway",
    "demo-data",
    "prometheus",
    "node-exporter",
    "grafana",
}
MONITORING = ROOT / "ops" / "monitoring"
POSTGRES_SERVICES = ("node1", "node2", "node3")
ETCD_SERVICES = ("etcd1", "etcd2", "etcd3")
ENV_EXAMPLE = ROOT / ".env.example"
#: Services that run once and exit (no healthcheck; what needs them waits for service_completed_successfully).
ONE_SHOT = {"demo-data"}
# Secrets the compose file reads from .env, none with a default; unset so the check sees only the env file.
SECRETS = (
    "POSTGRES_PASSWORD",
    "REPLICATION_PASSWORD",
    "GATEWAY_DB_PASSWORD",
    "GATEWAY_CURSOR_SECRET",
    "GATEWAY_WRITE_TOKENS",
    "GRAFANA_ADMIN_PASSWORD",
)
COMPOSE_VARIABLES = (*SECRETS, "DEMO_PAGES")


def _compose(*args: str, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """docker-compose with the documented example env file (as a deployment's .env would be read)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed: apt-get install docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES and not k.startswith("COMPOSE_")}
    if env_file is None:  # an empty one, so a developer's own .env is not read either
        env_file = Path(tempfile.mkdtemp(prefix="civic-compose-")) / "empty.env"
        env_file.write_text("")
    files = ["--env-file", str(env_file)]
    return subprocess.run(
        [binary, "--project-directory", str(ROOT), *files, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config_text() -> str:
    proc = _compose("config")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _service_blocks(config: str) -> dict[str, str]:
    """Split ``docker-compose config`` output into the text of each service, keyed by name."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_services = False
    for line in config.splitlines():
        if not line.startswith(" "):  # a top-level key: services, volumes, networks, ...
            in_services = line.rstrip() == "services:"
            current = None
            continue
        if not in_services:
            continue
        match = re.fullmatch(r"  ([A-Za-z0-9_.-]+):\s*", line)
        if match:
            current = blocks.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in blocks.items()}


def _environment(block: str) -> dict[str, str]:
    """A service's environment; values folded over several lines by ``docker-compose config`` are rejoined."""
    env: dict[str, str] = {}
    section = re.search(r"^    environment:\n((?:      .*\n?)+)", block, re.MULTILINE)
    assert section, "no environment"
    key = None
    for line in section.group(1).splitlines():
        entry = re.fullmatch(r"      ([A-Za-z_][A-Za-z0-9_]*): ?(.*)", line)
        if entry:
            key = entry.group(1)
            env[key] = entry.group(2).strip()
        elif key is not None:  # continuation, indented deeper than the key
            env[key] = f"{env[key]} {line.strip()}"
    return env


def _top_level_keys(block: str) -> set[str]:
    """The keys directly under a service (four spaces of indentation)."""
    return {m.group(1) for m in re.finditer(r"^    ([a-z_]+):", block, re.MULTILINE)}


@pytest.fixture(scope="module")
def services(config_text: str) -> dict[str, str]:
    return _service_blocks(config_text)


# --- docker-compose -------------------------------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    proc = _compose("config", "-q")
    assert proc.returncode == 0, proc.stderr
    # docker-compose reports ignored keys (deploy, unsupported options) as warnings but still exits 0.
    assert "WARNING" not in proc.stderr, proc.stderr


def test_compose_defines_the_topology() -> None:
    proc = _compose("config", "--services")
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == SERVICES


def test_parsed_blocks_match_the_service_list(services: dict[str, str]) -> None:
    assert set(services) == SERVICES


def test_every_service_has_a_healthcheck(services: dict[str, str]) -> None:
    for name, block in services.items():
        if name in ONE_SHOT:
            assert 'restart: "no"' in block or "restart: 'no'" in block or "restart: no" in block, name
            continue
        assert "healthcheck" in _top_level_keys(block), f"{name} has no healthcheck"
        assert "disable: true" not in block, f"{name} disables its healthcheck"
        assert re.search(r"^      test:", block, re.MULTILINE), f"{name}'s healthcheck has no test"


def test_every_service_has_resource_limits(services: dict[str, str]) -> None:
    for name, block in services.items():
        keys = _top_level_keys(block)
        assert {"mem_limit", "cpus"} <= keys or "deploy" in keys, f"{name} has no resource limits"


def test_postgres_services(services: dict[str, str]) -> None:
    for name in POSTGRES_SERVICES:
        block = services[name]
        assert "dockerfile: ops/docker/patroni.Dockerfile" in block, name
        assert "shm_size" in _top_level_keys(block), f"{name} has no shm_size"
        # Healthchecks ask Patroni's REST API, which knows whether its PostgreSQL runs.
        assert "http://127.0.0.1:8008/health" in block, f"{name}'s healthcheck does not ask Patroni"
    dockerfile = (OPS_DOCKER / "patroni.Dockerfile").read_text()
    assert re.search(r"^FROM postgres:15", dockerfile, re.MULTILINE)
    assert "apt-get install -y --no-install-recommends patroni" in dockerfile
    assert "postgresql-15-repack" in dockerfile  # python -m ops repack needs the extension on every node
    # Every node reads the shared settings (observability, checkpoints) as Patroni's custom_conf.
    assert "COPY ops/postgresql.conf /etc/postgresql/base.conf" in dockerfile
    assert "custom_conf: /etc/postgresql/base.conf" in (OPS_DOCKER / "patroni.yml").read_text()
    conf = (ROOT / "ops" / "postgresql.conf").read_text()
    assert re.search(r"^wal_level = replica", conf, re.MULTILINE)
    assert re.search(r"^hot_standby = on", conf, re.MULTILINE)
    assert re.search(r"^shared_preload_libraries = 'pg_stat_statements,auto_explain'", conf, re.MULTILINE)


def test_nodes_run_under_patroni_with_etcd(services: dict[str, str]) -> None:
    names = set()
    for name in POSTGRES_SERVICES:
        env = _environment(services[name])
        names.add(env["PATRONI_NAME"])
        assert env["PATRONI_ETCD3_HOSTS"] == "etcd1:2379,etcd2:2379,etcd3:2379", name
        assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{name}:5432"
        assert env["PATRONI_RESTAPI_CONNECT_ADDRESS"] == f"{name}:8008"
        for etcd in ETCD_SERVICES:
            assert re.search(rf"^      {etcd}:\n        condition: service_healthy", services[name], re.MULTILINE)
    assert names == set(POSTGRES_SERVICES)
    patroni = (OPS_DOCKER / "patroni.yml").read_text()
    for setting in (
        "ttl: 20",
        "loop_wait: 1",
        "retry_timeout: 3",
        "use_pg_rewind: true",
        "use_slots: true",
        "max_slot_wal_keep_size: 2GB",
        "- data-checksums",
    ):
        assert setting in patroni, setting
    assert re.search(r"^    - host replication replicator all scram-sha-256$", patroni, re.MULTILINE)


def test_three_etcd_members(services: dict[str, str]) -> None:
    clusters = set()
    for name in ETCD_SERVICES:
        env = _environment(services[name])
        assert env["ETCD_NAME"] == name
        clusters.add(env["ETCD_INITIAL_CLUSTER"])
        assert "etcdctl" in services[name] and "endpoint" in services[name], f"{name}'s healthcheck"
    assert clusters == {"etcd1=http://etcd1:2380,etcd2=http://etcd2:2380,etcd3=http://etcd3:2380"}


def test_pgbouncer_configuration() -> None:
    ini = (OPS_DOCKER / "pgbouncer.ini").read_text()
    settings = dict(re.findall(r"^(\w+) = (.*)$", ini, re.MULTILINE))
    assert settings["pool_mode"] == "transaction"
    assert settings["default_pool_size"] == "25"
    assert settings["max_client_conn"] == "200"
    assert settings["listen_port"] == "6432"
    for host, alias in (("node1", "node1"), ("node2", "node2"), ("node3", "node3")):
        assert f"{alias} = host={host} port=5432 dbname=civic\n" in ini
        assert re.search(
            rf"^{alias}_session = host={host} port=5432 dbname=civic pool_mode=session", ini, re.MULTILINE
        )


def test_gateway_environment(services: dict[str, str]) -> None:
    block = services["gateway"]
    env = _environment(block)
    nodes = env["GATEWAY_NODES"].split(",")
    admin = env["GATEWAY_ADMIN_NODES"].split(",")
    for i, alias in enumerate(("node1", "node2", "node3")):
        assert nodes[i].startswith(f"{alias}=host=pgbouncer port=6432 dbname={alias} user=gateway "), nodes[i]
        assert admin[i].startswith(
            f"{alias}=host=pgbouncer port=6432 dbname={alias}_session user=postgres "
        ), admin[i]
    assert len(nodes) == len(admin) == 3
    assert env["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    example = _env_example()
    assert env["GATEWAY_CURSOR_SECRET"] == example["GATEWAY_CURSOR_SECRET"]
    assert env["GATEWAY_WRITE_TOKENS"] == example["GATEWAY_WRITE_TOKENS"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert env["OTEL_SERVICE_NAME"] == "civic-gateway"
    assert env["GATEWAY_LOG_FORMAT"] == "json"
    # Metrics on their own port, inside the compose network only: the published port is the public one.
    assert env["GATEWAY_METRICS_PORT"].strip("'\"") == "9464"
    assert "9464" not in block.split("ports:")[-1]
    assert "dockerfile: Dockerfile" in block
    # The gateway's settings are valid as the compose file and the example env file give them.
    from gateway.settings import Settings

    values = {k.removeprefix("GATEWAY_").lower(): v.strip("'\"") for k, v in env.items() if k.startswith("GATEWAY_")}
    settings = Settings(**values)  # type: ignore[arg-type]
    assert settings.metrics_listener == ("0.0.0.0", 9464)


def test_demo_corpus_is_loaded_on_first_start(services: dict[str, str]) -> None:
    block = services["demo-data"]
    assert "civic-search-gateway:local" in block
    assert "python -m gateway migrate" in block and "python -m ops corpus --deployment --if-empty" in block
    assert _environment(block)["GATEWAY_ADMIN_NODES"] == _environment(services["gateway"])["GATEWAY_ADMIN_NODES"]
    assert re.search(
        r"^      demo-data:\n        condition: service_completed_successfully", services["gateway"], re.MULTILINE
    )


def test_dependencies_wait_for_health(services: dict[str, str]) -> None:
    for name, block in services.items():
        depends = re.search(r"^    depends_on:\n((?:      .*\n?)+)", block, re.MULTILINE)
        if depends is None:
            continue
        conditions = re.findall(r"condition: (\S+)", depends.group(1))
        assert conditions, f"{name} depends on services without a condition"
        assert set(conditions) <= {"service_healthy", "service_completed_successfully"}, f"{name}: {conditions}"
    gateway = services["gateway"]
    for dependency in ("pgbouncer", "redis"):
        assert re.search(rf"^      {dependency}:\n        condition: service_healthy", gateway, re.MULTILINE)
    # Traces are best effort: the gateway starts (and serves) without Jaeger.
    assert not re.search(r"^      jaeger:", gateway, re.MULTILINE)


def test_jaeger_accepts_otlp(services: dict[str, str]) -> None:
    block = services["jaeger"]
    # Jaeger 2 (v1, all-in-one, reached its end of life): OTLP is received natively.
    assert re.search(r"image: jaegertracing/jaeger:2\.\d+\.\d+$", block, re.MULTILINE)
    for port in ("16686", "4317", "4318"):
        assert f":{port}:{port}" in block


def test_images_are_pinned_to_exact_versions(services: dict[str, str]) -> None:
    for name, block in services.items():
        image = re.search(r"^    image: (\S+)$", block, re.MULTILINE)
        assert image, f"{name} has no image"
        tag = image.group(1).rpartition(":")[2]
        if image.group(1).startswith("civic-"):
            continue  # built here
        # major.minor at least: a bare major (postgres:15, redis:7) or latest floats to new minors.
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image.group(1)} is not pinned to a minor version"
    node = re.search(r"^FROM node:(\d+)\.", DOCKERFILE.read_text(), re.MULTILINE)
    assert node and int(node.group(1)) % 2 == 0 and int(node.group(1)) >= 24, "Node: an LTS line (even major)"
    assert re.search(r"^FROM postgres:15\.\d+", (OPS_DOCKER / "patroni.Dockerfile").read_text(), re.MULTILINE)


def test_monitoring_is_provisioned_from_ops_monitoring(services: dict[str, str]) -> None:
    prometheus = services["prometheus"]
    assert re.search(r"image: prom/prometheus:v\d+\.\d+\.\d+$", prometheus, re.MULTILINE)
    assert f"- {MONITORING}:/etc/prometheus/civic:ro" in prometheus
    assert "--config.file=/etc/prometheus/civic/prometheus.yml" in prometheus
    # The rule file Prometheus loads is the one in this folder, under the path the mount gives it.
    assert "- /etc/prometheus/civic/alerts.yml" in (MONITORING / "prometheus.yml").read_text()
    # Prometheus scrapes the gateway's metrics port, not its public one.
    assert "targets: [\"gateway:9464\"]" in (MONITORING / "prometheus.yml").read_text()
    grafana = services["grafana"]
    assert re.search(r"image: grafana/grafana:\d+\.\d+\.\d+$", grafana, re.MULTILINE)
    assert f"- {MONITORING / 'grafana' / 'provisioning'}:/etc/grafana/provisioning:ro" in grafana
    assert f"- {MONITORING / 'dashboard.json'}:/var/lib/grafana/dashboards/civic/dashboard.json:ro" in grafana
    provider = (MONITORING / "grafana" / "provisioning" / "dashboards" / "civic.yml").read_text()
    assert "path: /var/lib/grafana/dashboards/civic" in provider
    datasource = (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: civic-prometheus" in datasource and "url: http://prometheus:9090" in datasource
    assert re.search(r"image: prom/node-exporter:v\d+\.\d+\.\d+$", services["node-exporter"], re.MULTILINE)


def _env_example() -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )


def test_no_real_secrets_in_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    for variable in (*SECRETS, "GF_SECURITY_ADMIN_PASSWORD", "PATRONI_SUPERUSER_PASSWORD"):
        for match in re.finditer(rf"\b{variable}: (\S+)", text):
            assert match.group(1).startswith("${"), f"{variable} is hard-coded: {match.group(0)}"
            assert ":-" not in match.group(1), f"{variable} has a default: {match.group(0)}"
    assert not re.search(r"password=(?!\$\{)", text), "a connection string carries a literal password"


def test_every_secret_comes_from_the_env_file() -> None:
    example = _env_example()
    assert set(SECRETS) <= set(example), "a secret is missing from .env.example"
    from gateway.settings import Settings

    # The example's write token is in the form the gateway accepts (a hash, never the token).
    Settings(nodes="n=host=x", write_tokens=example["GATEWAY_WRITE_TOKENS"])
    # Without the env file, compose refuses to start and names the missing secret: no secret has a default.
    proc = _compose("config", "-q", env_file=None)
    assert proc.returncode != 0
    assert any(name in proc.stderr for name in SECRETS), proc.stderr


def test_shell_scripts_parse() -> None:
    for script, shell in (
        ("patroni-post-init.sh", "sh"),
        ("pgbouncer-entrypoint.sh", "sh"),
    ):
        binary = shutil.which(shell)
        if binary is None:
            pytest.skip(f"{shell} not installed")
        proc = subprocess.run(
            [binary, "-n", str(OPS_DOCKER / script)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


# --- Dockerfile -------------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        instruction, _, args = stripped.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def test_dockerfile_runs_gateway_serve() -> None:
    assert DOCKERFILE.exists()
    instructions = _dockerfile_instructions()
    cmds = [args for instruction, args in instructions if instruction == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    cmd = json.loads(cmds[-1])
    assert cmd == ["python", "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_dockerfile_stages_and_sources() -> None:
    instructions = _dockerfile_instructions()
    froms = [args.split()[0] for instruction, args in instructions if instruction == "FROM"]
    # Python stages are slim; one Node stage (an LTS line) only fetches GraphiQL's assets from the npm lock file.
    assert froms and all(re.fullmatch(r"python:3\.11-slim-bookworm|node:\d+\.\d+-bookworm-slim", f) for f in froms)
    assert froms[-1] == "python:3.11-slim-bookworm"
    assert any("npm ci" in args for instruction, args in instructions if instruction == "RUN")
    assert any("--from=web" in args and "static/vendor/node_modules" in args
               for instruction, args in instructions if instruction == "COPY")
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    # The server and the operators' commands ('ops' extra), not the gRPC exporter nor the test tools.
    assert "pip install -c constraints.txt '.[ops]'" in runs
    copied = " ".join(args for instruction, args in instructions if instruction == "COPY")
    for source in (
        "pyproject.toml",
        "constraints.txt",
        "gateway/",
        "schema/",
        "routing/",
        "migrations/",
        "ops/",
    ):
        assert source in copied, f"{source} is not copied into the image"


def _docker_engine() -> str:
    """The docker CLI, when it reaches an engine; otherwise the test is skipped saying how to get one."""
    binary = shutil.which("docker")
    how = (
        "install Docker (apt-get install docker.io) and start its daemon (dockerd), or set DOCKER_HOST to a "
        "reachable engine, to build the image"
    )
    if binary is None:
        pytest.skip(f"no docker CLI: {how}")
    try:
        info = subprocess.run([binary, "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"'docker info' did not answer within 30 s: {how}")
    if info.returncode != 0:
        pytest.skip(f"no Docker engine reachable ('docker info' failed): {how}")
    return binary


@pytest.mark.stack
@pytest.mark.slow
def test_dockerfile_build() -> None:
    docker = _docker_engine()
    tag = f"civic-search-gateway:test-{os.getpid()}"
    try:
        proc = subprocess.run(
            [docker, "build", "--tag", tag, str(ROOT)], capture_output=True, text=True, timeout=1800, check=False
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        inspect = subprocess.run(
            [docker, "image", "inspect", "--format", "{{json .Config.Cmd}} {{.Config.User}}", tag],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        cmd, _, user = inspect.stdout.strip().rpartition(" ")
        assert json.loads(cmd) == ["python", "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
        assert user.split(":")[0] not in {"", "root", "0"}
    finally:
        subprocess.run([docker, "image", "rm", "--force", tag], capture_output=True, timeout=120, check=False)


def test_dockerfile_runs_unprivileged_with_healthcheck() -> None:
    instructions = _dockerfile_instructions()
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthchecks = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    assert healthchecks
    assert "http://127.0.0.1:8000/healthz" in healthchecks[-1]
    assert "python" in healthchecks[-1] and "curl" not in healthchecks[-1]


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".venv", ".stack", ".git", "**/__pycache__", "node_modules", "docs"):
        assert pattern in patterns, f".dockerignore does not exclude {pattern}"
    for needed in ("gateway", "schema", "routing", "migrations", "ops", "pyproject.toml", "constraints.txt"):
        assert needed not in patterns, f".dockerignore excludes {needed}, which the build copies"
