"""Run every benchmark in bench/ and write their result lines to docs/benchmarks.md (keeping its
hand-written "## Notes" section).

Each benchmark is a script that prints result lines of ``key=value`` pairs (for example
``server=granian path=/healthz rps=4100``); anything else it prints is shown but not recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Not a benchmark: the dataset generator that hot_queries.py runs (it also runs on its own).
NOT_BENCHMARKS = {"run.py", "dataset.py"}
# The hot queries generate 1,000,000 customers first (about half an hour on 2 cores).
TIMEOUT_SECONDS = 3600
RESULT_LINE = re.compile(r"^[a-z_]+=\S+( [a-z_0-9]+=\S+)+$")
NOTES_HEADING = "## Notes"


def kept_notes(path: Path) -> str:
    """The hand-written notes ending the file (from a ``## Notes`` heading on): kept across runs,
    since they explain the figures (what limits them, what was tried)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    start = text.find(f"\n{NOTES_HEADING}\n")
    return text[start + 1 :] if start >= 0 else ""


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    scripts = sorted(
        p
        for p in (ROOT / "bench").glob("*.py")
        if p.name not in NOT_BENCHMARKS and not p.name.startswith("_")
    )
    sections: list[str] = []
    failed = False
    for script in scripts:
        print(f"== {script.name}", flush=True)
        process = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        sys.stdout.write(process.stdout)
        sys.stderr.write(process.stderr[-4000:])
        results = [line for line in process.stdout.splitlines() if RESULT_LINE.match(line.strip())]
        if process.returncode != 0:
            failed = True
            results.append(f"(exited with status {process.returncode})")
        body = "\n".join(results) or "(no results)"
        sections.append(f"## {script.stem}\n\n```\n{body}\n```\n")
    today = dt.datetime.now(tz=dt.UTC).date().isoformat()
    path = ROOT / "docs" / "benchmarks.md"
    notes = kept_notes(path)
    text = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {today}.\n\n"
        f"Machine: {machine()}.\n\n" + "\n".join(sections) + (f"\n{notes}" if notes else "")
    )
    path.write_text(text, encoding="utf-8")
    print("wrote docs/benchmarks.md")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
