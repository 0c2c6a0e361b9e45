"""Reading configuration from the environment.

This is the only module that touches ``os.environ``. Every value can also come from a file named by
``<NAME>_FILE`` (container secrets); the file wins over nothing but loses to nothing: setting both is
an error, because an operator who does so has two sources of truth.

Problems are collected rather than raised one by one, so a misconfigured deployment is told about every
problem at once.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """Typed access to environment variables that records every malformed or missing value."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        file_name = self._environ.get(f"{name}_FILE")
        if file_name:
            if value is not None:
                self.problems.append(f"{name} and {name}_FILE are both set; keep one.")
                return value
            try:
                return Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problems.append(f"{name}_FILE={file_name} cannot be read ({exc.strerror}).")
                return None
        return value

    def is_set(self, name: str) -> bool:
        return self.raw(name) not in (None, "")

    def _parse(self, name: str, default: object, parse: Callable[[str], T], kind: str) -> T:
        value = self.raw(name)
        if value is None or value == "":
            if default is _MISSING:
                self.problems.append(f"{name} is required.")
                return None  # type: ignore[return-value]
            return default  # type: ignore[return-value]
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not a valid {kind}.")
            return default if default is not _MISSING else None  # type: ignore[return-value]

    def str(self, name: builtins.str, default: object = _MISSING) -> builtins.str:
        return self._parse(name, default, lambda v: v, "string")

    def int(
        self, name: builtins.str, default: object = _MISSING, *, minimum: builtins.int | None = None
    ) -> builtins.int:
        def parse(value: builtins.str) -> builtins.int:
            number = builtins.int(value)
            if minimum is not None and number < minimum:
                raise ValueError(value)
            return number

        kind = "integer" if minimum is None else f"integer >= {minimum}"
        return self._parse(name, default, parse, kind)

    def bool(self, name: builtins.str, default: object = _MISSING) -> builtins.bool:
        def parse(value: builtins.str) -> builtins.bool:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(value)

        return self._parse(name, default, parse, "boolean (true/false)")

    def float(self, name: builtins.str, default: object = _MISSING) -> builtins.float:
        """Non-money ratios only (sampling rates); money is never a float."""
        return self._parse(name, default, builtins.float, "number")

    def list(self, name: builtins.str, default: object = _MISSING) -> builtins.list[builtins.str]:
        def parse(value: builtins.str) -> builtins.list[builtins.str]:
            return [item.strip() for item in value.split(",") if item.strip()]

        return self._parse(name, default, parse, "comma-separated list")

    def choice(
        self, name: builtins.str, choices: tuple[builtins.str, ...], default: object = _MISSING
    ) -> builtins.str:
        def parse(value: builtins.str) -> builtins.str:
            if value not in choices:
                raise ValueError(value)
            return value

        return self._parse(name, default, parse, "one of " + ", ".join(choices))

    def raise_if_problems(self, header: builtins.str) -> None:
        if self.problems:
            lines = "\n".join(f"  - {problem}" for problem in self.problems)
            raise ImproperlyConfigured(f"{header}\n{lines}")
