"""The container image, the compose file, the systemd units and the nginx site agree with each other
and with Tollgate: every variable they set is one Tollgate reads, every command exists, the stop
bounds nest, and the nginx configuration they produce passes `nginx -t`."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
from pathlib import Path

import pytest
from django.core.management import get_commands

from tests.deploy.cluster import local_cluster_module, nginx_or_skip
from tollgate.ops.management.commands import serve

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
CONTAINERFILE = REPO_ROOT / "Containerfile"
COMPOSE = DEPLOY / "compose.yaml"
SYSTEMD = DEPLOY / "systemd"
SITE_TEMPLATE = DEPLOY / "nginx" / "tollgate.conf.template"
# Variables of the runtime and of the images Tollgate runs beside, not Tollgate's own.
NOT_TOLLGATE = {"PATH", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_CACHE_DIR"}
SERVICES = {"postgres", "redis", "migrate", "web", "worker", "nginx"}


def tollgate_reads(name: str) -> bool:
    """Whether the settings read ``name`` (or .env.example documents it)."""
    settings_source = "".join(
        path.read_text() for path in (REPO_ROOT / "src/tollgate/config").glob("*.py")
    )
    example = (REPO_ROOT / ".env.example").read_text()
    return f'"{name}"' in settings_source or re.search(rf"^{name}=", example, re.M) is not None


def compose_blocks() -> dict[str, str]:
    """The compose file's top-level ``x-tollgate`` block and each service's block, as text (the
    file keeps to a plain style: two-space indentation, commands as JSON-style lists)."""
    text = COMPOSE.read_text()
    blocks: dict[str, str] = {}
    anchor = re.search(r"^x-tollgate: &tollgate\n((?:  .*\n|\n)*)", text, re.M)
    assert anchor is not None
    blocks["x-tollgate"] = anchor.group(1)
    services = re.search(r"^services:\n((?:  .*\n|\n)*)", text, re.M)
    assert services is not None
    for match in re.finditer(r"^  ([a-z-]+):\n((?:    .*\n|\n)*)", services.group(1), re.M):
        blocks[match.group(1)] = match.group(2)
    return blocks


def compose_environment(block: str, indent: str = "    ") -> dict[str, str]:
    section = re.search(rf"^{indent[:-2]}environment:.*\n((?:{indent}.*\n)*)", block, re.M)
    assert section is not None
    lines = [line.strip() for line in section.group(1).splitlines()]
    pairs = (line.split(":", 1) for line in lines if not line.startswith("#"))
    return {key: value.strip().strip('"') for key, value in pairs}


def compose_command(block: str) -> list[str]:
    match = re.search(r"^    command: (\[.*\])$", block, re.M)
    assert match is not None
    return json.loads(match.group(1))


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(_joined_multi_values(SYSTEMD / name))
    return parser


def _joined_multi_values(path: Path) -> str:
    """systemd repeats keys (Environment=, ExecStart=); number them so configparser keeps all."""
    seen: dict[str, int] = {}
    lines = []
    for line in path.read_text().splitlines():
        key = line.split("=", 1)[0]
        if (
            "=" in line
            and not line.startswith("#")
            and key in {"Environment", "ExecStart", "Wants"}
        ):
            seen[key] = seen.get(key, 0) + 1
            line = f"{key}.{seen[key]}={line.split('=', 1)[1]}"
        lines.append(line)
    return "\n".join(lines)


def unit_values(parser: configparser.ConfigParser, section: str, key: str) -> list[str]:
    return [value for name, value in parser[section].items() if name.split(".")[0] == key]


def management_command(argv: list[str]) -> str:
    assert argv[argv.index("-m") + 1] == "tollgate"
    return argv[argv.index("-m") + 2]


class TestContainerImage:
    def test_it_runs_a_web_process_listening_on_all_interfaces_and_stops_on_sigterm(self):
        text = CONTAINERFILE.read_text()
        assert json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1)) == [  # type: ignore[union-attr]
            "python",
            "-m",
            "tollgate",
            "serve",
            "--no-worker",
        ]
        assert "HOST=0.0.0.0" in text
        assert "STOPSIGNAL SIGTERM" in text
        assert "--require-hashes -r requirements/runtime.lock" in text

    def test_every_variable_it_sets_is_one_tollgate_reads(self):
        text = CONTAINERFILE.read_text()
        blocks = re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.M)
        names = {name for block in blocks for name in re.findall(r"([A-Z][A-Z0-9_]+)=", block)}
        names -= NOT_TOLLGATE
        assert {"TOLLGATE_ENV", "HOST", "PORT"} <= names
        assert [name for name in sorted(names) if not tollgate_reads(name)] == []

    def test_what_it_copies_exists_and_is_not_ignored(self):
        text = CONTAINERFILE.read_text()
        ignored = {
            line.strip()
            for line in (REPO_ROOT / ".containerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
        copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M)
        sources = [source for line in copied for source in line.split()]
        assert sources
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert source.split("/")[0] not in ignored, source
        assert (REPO_ROOT / ".dockerignore").read_text() == (
            REPO_ROOT / ".containerignore"
        ).read_text()


class TestCompose:
    def test_it_has_the_database_the_cache_web_workers_migrations_and_nginx(self):
        assert set(compose_blocks()) - {"x-tollgate"} == SERVICES

    def test_web_and_workers_run_serve_and_get_longer_to_stop_than_serve_takes(self):
        blocks = compose_blocks()
        assert compose_command(blocks["web"])[-2:] == ["serve", "--no-worker"]
        assert compose_command(blocks["worker"])[-2:] == ["serve", "--no-web"]
        assert management_command(compose_command(blocks["migrate"])) in get_commands()
        grace = re.search(r"stop_grace_period: (\d+)s", blocks["x-tollgate"])
        assert grace is not None
        assert int(grace.group(1)) > serve.STOP_TIMEOUT
        for service in ("web", "worker"):
            assert "<<: *tollgate" in blocks[service]
            assert re.search(r"replicas: \$\{TOLLGATE_[A-Z]+_REPLICAS:-2\}", blocks[service])

    def test_tollgate_trusts_the_one_proxy_in_front_and_reads_every_variable_it_is_given(self):
        environment = compose_environment(compose_blocks()["x-tollgate"], indent="    ")
        assert environment["TOLLGATE_TRUSTED_PROXIES"] == "1"
        assert environment["HOST"] == "0.0.0.0"  # noqa: S104
        assert [name for name in sorted(environment) if not tollgate_reads(name)] == []

    def test_nginx_is_given_every_placeholder_of_the_site_template(self):
        environment = compose_environment(compose_blocks()["nginx"], indent="      ")
        placeholders = set(re.findall(r"\$\{(TOLLGATE_[A-Z_]+)\}", SITE_TEMPLATE.read_text()))
        assert placeholders == set(environment)
        assert "./nginx/tollgate.conf.template:/etc/nginx/templates/" in compose_blocks()["nginx"]


class TestSystemdUnits:
    @pytest.mark.parametrize(
        ("name", "flag"),
        [("tollgate-web@.service", "--no-worker"), ("tollgate-worker@.service", "--no-web")],
    )
    def test_web_and_worker_units_run_serve_and_signal_only_serve(self, name, flag):
        parsed = unit(name)
        [exec_start] = unit_values(parsed, "Service", "ExecStart")
        assert exec_start.endswith(f"-m tollgate serve {flag}")
        assert parsed["Service"]["KillMode"] == "mixed"
        assert parsed["Service"]["KillSignal"] == "SIGTERM"
        assert int(parsed["Service"]["TimeoutStopSec"]) > serve.STOP_TIMEOUT
        assert parsed["Install"]["WantedBy"] == "tollgate.target"

    def test_the_web_unit_listens_on_its_instance_port(self):
        environment = unit_values(unit("tollgate-web@.service"), "Service", "Environment")
        assert "PORT=%i" in environment

    def test_every_command_the_units_run_exists(self):
        commands = get_commands()
        for path in SYSTEMD.glob("*.service"):
            for exec_start in unit_values(unit(path.name), "Service", "ExecStart"):
                assert management_command(exec_start.split()) in commands, (path.name, exec_start)

    def test_every_variable_the_units_set_is_one_tollgate_reads(self):
        for path in SYSTEMD.glob("*.service"):
            for assignment in unit_values(unit(path.name), "Service", "Environment"):
                assert tollgate_reads(assignment.split("=", 1)[0]), (path.name, assignment)

    def test_the_target_starts_two_web_processes_and_two_workers(self):
        wants = " ".join(unit_values(unit("tollgate.target"), "Unit", "Wants")).split()
        assert sorted(wants) == [
            "tollgate-web@8001.service",
            "tollgate-web@8002.service",
            "tollgate-worker@1.service",
            "tollgate-worker@2.service",
        ]
        assert (SYSTEMD / "tollgate-backup.timer").exists()


class TestNginx:
    def test_the_site_sends_the_headers_tollgate_reads_behind_one_proxy(self):
        text = SITE_TEMPLATE.read_text()
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
        assert "proxy_set_header Host $http_host;" in text
        assert "proxy_next_upstream error timeout;" in text

    @pytest.mark.parametrize(
        "listen", ["80 default_server", "127.0.0.1:8080"], ids=["compose", "local-cluster"]
    )
    def test_the_generated_configuration_passes_nginx_t(self, tmp_path, listen):
        binary = nginx_or_skip()
        module = local_cluster_module()
        values = {
            "TOLLGATE_RUN_DIR": str(tmp_path),
            "TOLLGATE_NGINX_USER": "",
            "TOLLGATE_LISTEN": listen,
            "TOLLGATE_UPSTREAM_SERVERS": module.upstream_servers([8001, 8002]),
        }
        (tmp_path / "logs").mkdir()
        (tmp_path / "nginx-temp").mkdir()
        site = module.render(SITE_TEMPLATE, values)
        assert "${" not in "".join(line for line in site.splitlines() if not line.startswith("#"))
        (tmp_path / "tollgate.conf").write_text(site)
        main = tmp_path / "nginx.conf"
        main.write_text(module.render(DEPLOY / "nginx" / "nginx.conf.template", values))
        checked = subprocess.run(
            [binary, "-t", "-p", str(tmp_path), "-c", str(main)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
