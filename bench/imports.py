"""Cold-start import cost: ``import function_app`` beside a bare
``import azure.functions, azure.durable_functions`` (the floor every Python durable app
pays), each in a fresh interpreter, alternating, median of several runs.

Three cases: bytecode cached for everything (a writable app folder after the first start,
or a package shipped with its ``__pycache__``); the app's own bytecode missing (a
read-only package shipped without it: the app is compiled at each cold start, the SDKs
are not); and no bytecode at all (the SDKs compiled too, for scale).

    python -m bench.imports [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.3
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
BARE = "azure.functions, azure.durable_functions"
APP = "function_app"


def import_ms(module: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip()) * 1000


def measure(env: dict[str, str], repeats: int) -> tuple[float, float, float]:
    """Medians of the bare and the app import, and of each app import over the bare one run
    just before it: the machine's load drifts during a run, and a pair shares its moment."""
    bare, app = [], []
    for _ in range(repeats):
        bare.append(import_ms(BARE, env))
        app.append(import_ms(APP, env))
    ratios = [a / b for a, b in zip(app, bare, strict=True)]
    return statistics.median(bare), statistics.median(app), statistics.median(ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    print(
        f"import time, median of {args.repeats} fresh interpreters each; the ratio is the "
        "median of each app import over the bare import run just before it"
    )
    with tempfile.TemporaryDirectory() as cache:
        cached = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        import_ms(APP, cached)  # writes the bytecode once
        app_cold = {**cached, "PYTHONDONTWRITEBYTECODE": "1"}
        app_cold["PYTHONPYCACHEPREFIX"] = str(Path(cache) / "app-cold")
        shutil.copytree(cache, app_cold["PYTHONPYCACHEPREFIX"], ignore=_skip(ROOT))
        uncached = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        uncached["PYTHONPYCACHEPREFIX"] = str(Path(cache) / "never-written")
        cases = (
            ("bytecode cached", cached),
            ("app not compiled", app_cold),
            ("nothing compiled", uncached),
        )
        for label, env in cases:
            bare, app, ratio = measure(env, args.repeats)
            verdict = "meets" if ratio <= TARGET_RATIO else "misses"
            print(
                f"  {label:<17} bare SDKs {bare:6.1f} ms   function_app {app:6.1f} ms   "
                f"{ratio:.2f}x ({verdict} <= {TARGET_RATIO}x)"
            )


def _skip(app_root: Path) -> Callable[[str, list[str]], set[str]]:
    """For ``copytree``: leave out the bytecode of the app's own packages (the virtual
    environment's, which may live inside the app folder, is kept)."""
    mirrored = str(app_root.resolve()).lstrip(os.sep)

    def ignore(folder: str, names: list[str]) -> set[str]:
        if not folder.endswith(mirrored):
            return set()
        return {name for name in names if not name.startswith(".venv")}

    return ignore


if __name__ == "__main__":
    main()
