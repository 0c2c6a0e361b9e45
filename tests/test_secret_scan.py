"""No secrets in the repository: every file git tracks, and every untracked file git does not
ignore, is scanned for strings that look like live credentials.

Looked for: Stripe secret and restricted keys (live and test), Tollgate's own API keys, Stripe
webhook signing secrets, private key blocks, AWS access key ids, and passwords inside URLs
(``scheme://user:password@host``) unless the password is an obvious placeholder. A finding is reported as ``path:line: kind``, never
with the secret itself, so a failing run does not copy the secret into CI logs.

Patterns and test strings are assembled from pieces, so this file never matches itself. A line that
must hold a secret-looking fixture can say so with the marker ``secret-scan: allow``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_BYTES = 5 * 1024 * 1024
ALLOW_MARKER = "secret-scan: " + "allow"

_DASHES = "-" * 5
_STRIPE_KEY = re.compile(
    r"(?<![A-Za-z0-9_])(?:" + "s" + "k" + "|" + "r" + "k" + r")_(?:live|test)_([A-Za-z0-9]{10,})"
)
# Tollgate's own API keys: the mode, then 52 letters and digits (12 to find it, 40 secret).
_TOLLGATE_KEY = re.compile(
    r"(?<![A-Za-z0-9_])" + "t" + "g" + r"_(?:live|test)_([A-Za-z0-9]{52})(?![A-Za-z0-9])"
)
_WEBHOOK_SECRET = re.compile(r"(?<![A-Za-z0-9_])" + "wh" + "sec" + r"_([A-Za-z0-9+/=]{20,})")
_PRIVATE_KEY = re.compile(_DASHES + r"BEGIN (?:[A-Z0-9]+ )*" + "PRIVATE" + " KEY" + _DASHES)
_AWS_ACCESS_KEY = re.compile(r"(?<![A-Z0-9])" + "AK" + "IA" + r"([0-9A-Z]{16})(?![0-9A-Z])")
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://"
    r"[^\s:/?#@'\"<>]*:([^\s/?#@'\"<>]+)@[A-Za-z0-9\[\]._%-]+"
)

# Passwords in URLs that are clearly not real: words, variables, templates, masks.
_PLACEHOLDER_WORDS = (
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "changeme",
    "change-me",
    "example",
    "placeholder",
    "redacted",
    "filtered",
    "your",
    "dummy",
    "xxx",
)
_PLACEHOLDER_SHAPES = re.compile(
    r"(?:\*+|\.+|x+|X+|<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{+[^}]*\}+|%\([^)]*\)s|\[[^\]]*\])"
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


def _is_placeholder(secret: str) -> bool:
    lowered = secret.lower()
    if _PLACEHOLDER_SHAPES.fullmatch(secret) or len(set(secret)) == 1:
        return True
    return any(word in lowered for word in _PLACEHOLDER_WORDS)


def find_secrets(text: str, path: str = "<text>") -> list[Finding]:
    """Every secret-looking string in ``text``, as (path, line, kind)."""
    findings: list[Finding] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if ALLOW_MARKER in line:
            continue
        kinds: list[str] = []
        kinds += ["Stripe secret key" for m in _STRIPE_KEY.finditer(line) if len(set(m[1])) > 1]
        kinds += ["Tollgate API key" for m in _TOLLGATE_KEY.finditer(line) if len(set(m[1])) > 1]
        kinds += ["Stripe webhook secret" for m in _WEBHOOK_SECRET.finditer(line)]
        kinds += ["private key block" for _ in _PRIVATE_KEY.finditer(line)]
        kinds += ["AWS access key id" for _ in _AWS_ACCESS_KEY.finditer(line)]
        kinds += [
            "password in URL" for m in _URL_PASSWORD.finditer(line) if not _is_placeholder(m[1])
        ]
        findings += [Finding(path, number, kind) for kind in kinds]
    return findings


def _git_paths(*args: str) -> list[str]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    completed = subprocess.run(
        [git, "ls-files", "-z", *args], cwd=REPO_ROOT, capture_output=True, check=False
    )
    if completed.returncode != 0:
        pytest.skip(f"not a git checkout: {completed.stderr.decode(errors='replace').strip()}")
    return [
        name for name in completed.stdout.decode("utf-8", "surrogateescape").split("\0") if name
    ]


def _read_text(path: Path) -> str | None:
    """The file's text, or None for what cannot hold a readable secret (gone, special, binary)."""
    if path.is_symlink() or not path.is_file():
        return None
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES)
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def test_no_file_in_the_repository_holds_a_secret() -> None:
    paths = sorted(set(_git_paths()) | set(_git_paths("--others", "--exclude-standard")))
    assert paths, "git listed no files"
    findings: list[Finding] = []
    for name in paths:
        text = _read_text(REPO_ROOT / name)
        if text is not None:
            findings += find_secrets(text, name)
    assert not findings, "secret-looking strings found:\n" + "\n".join(map(str, findings))


class TestDetector:
    """The detector on synthetic strings assembled at run time."""

    stripe_live = "s" + "k_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    stripe_test = "s" + "k_" + "test_" + "51Hx9QbC2mZr8Tq4Ls"
    restricted = "r" + "k_" + "live_" + "9aK2LmQ8xWz3TbR1"
    webhook = "wh" + "sec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    aws = "AK" + "IA" + "IOSFODNN7EXAMPLQ"
    tollgate = "t" + "g_" + "live_" + "Ab3dE6gH9kLm" + "Qr5tUv8xYz2bC4eF6hJ9kM3nP5sT7wZ0aB2dF4gH"
    pem = _DASHES + "BEGIN " + "RSA PRIVATE" + " KEY" + _DASHES
    pem_plain = _DASHES + "BEGIN " + "PRIVATE" + " KEY" + _DASHES

    @pytest.mark.parametrize(
        ("line", "kind"),
        [
            (f"STRIPE_SECRET_KEY={stripe_live}", "Stripe secret key"),
            (f'api_key = "{stripe_test}"', "Stripe secret key"),
            (f"key: {restricted}", "Stripe secret key"),
            (f"STRIPE_WEBHOOK_SECRET={webhook}", "Stripe webhook secret"),
            (f"TOLLGATE_KEY={tollgate}", "Tollgate API key"),
            (f"aws_access_key_id = {aws}", "AWS access key id"),
            (pem, "private key block"),
            (pem_plain, "private key block"),
            (
                "DATABASE_URL=postgres://tollgate:" + "Tr0ub4dor3" + "@db:5432/app",
                "password in URL",
            ),
            ("redis://:" + "hunter2x" + "@cache:6379/0", "password in URL"),
            ("see https://ops:" + "q9Zr!k" + "@example.org/x", "password in URL"),
        ],
    )
    def test_finds_each_kind(self, line: str, kind: str) -> None:
        assert find_secrets(f"first line\n{line}\n", "conf.env") == [Finding("conf.env", 2, kind)]

    @pytest.mark.parametrize(
        "line",
        [
            "s" + "k_" + "test_" + "short",
            "p" + "k_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
            "s" + "k_" + "test_" + "x" * 24,
            "task_" + "test_" + "abcdefghijkl",
            "wh" + "sec_" + "tooShort",
            "t" + "g_" + "test_" + "A" * 52,
            "the " + "t" + "g_" + "live_" + " prefix",
            "AK" + "IA" + "IOSFODNN7EXAMP",
            _DASHES + "BEGIN " + "PUBLIC KEY" + _DASHES,
            "postgres://tollgate@db:5432/app",
            "postgres://tollgate:@db:5432/app",
            "postgres://user:" + "password" + "@localhost/db",
            "postgres://user:" + "${DB_PASSWORD}" + "@localhost/db",
            "redis://:" + "<redis-password>" + "@host/0",
            "smtp://mailer:" + "****" + "@mail.example.org",
            "http://127.0.0.1:8000/path",
            "https://example.org:443/a:b@c",
            f"STRIPE_SECRET_KEY={'s' + 'k_' + 'live_' + '4eC39HqLyjWDarjtT1zdp7dc'}  # {ALLOW_MARKER}",
        ],
    )
    def test_ignores_look_alikes_and_placeholders(self, line: str) -> None:
        assert find_secrets(line) == []

    def test_reports_every_hit_with_its_line_and_never_the_secret(self) -> None:
        text = "\n".join(["ok", self.stripe_live, "ok", f"{self.aws} {self.webhook}"])
        findings = find_secrets(text, "settings.py")
        assert [str(finding) for finding in findings] == [
            "settings.py:2: Stripe secret key",
            "settings.py:4: Stripe webhook secret",
            "settings.py:4: AWS access key id",
        ]
        assert all(self.stripe_live not in str(finding) for finding in findings)
