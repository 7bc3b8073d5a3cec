"""Helpers shared by the benchmark scripts: machine facts and the RESULTS.md append."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(name: str, result: dict, summary: str) -> None:
    """Append one dated line to RESULTS.md and print the JSON line last (the contract)."""
    result = {"benchmark": name, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "git": git_sha(), "machine": machine(), **result}
    with RESULTS.open("a", encoding="utf-8") as f:
        f.write(f"| {result['date']} | {name} | {result['git']} | {result['machine']} | {summary} |\n")
    print(json.dumps(result, ensure_ascii=False))
