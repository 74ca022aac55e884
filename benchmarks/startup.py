"""Start-up time of the light commands: `emo --help` and `emo validate manifests/demo.yaml`.

Each run is a fresh Python process (what a user or CI step pays), so imports are counted in
full; the script prints every run's wall time, the median and the best, the median CPU time
(user + system) of the process, and the load average it started with. On a shared machine
wall times swing with the neighbours; CPU time much less: compare medians of runs made in the
same session.

    python benchmarks/startup.py [--repeat 9] [--python .venv/bin/python]

`--python` picks the interpreter (e.g. another checkout's virtualenv) so two versions of the
project can be compared in one session; `--cwd` runs the commands from another checkout.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "emo --help": ["-m", "emo_cli", "--help"],
    "emo validate manifests/demo.yaml": ["-m", "emo_cli", "validate", "manifests/demo.yaml"],
}


def time_once(python: str, args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([python, *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="fresh processes per command")
    parser.add_argument("--python", default=sys.executable, help="interpreter with emo-cli installed")
    parser.add_argument("--cwd", type=Path, default=REPO, help="checkout whose manifests/ to use")
    args = parser.parse_args()

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    time_once(args.python, COMMANDS["emo --help"], args.cwd)  # warm the file cache
    for name, argv in COMMANDS.items():
        runs = [time_once(args.python, argv, args.cwd) for _ in range(args.repeat)]
        walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
        shown = " ".join(f"{w:.3f}" for w in walls)
        print(f"{name}: median {statistics.median(walls):.3f} s, best {min(walls):.3f} s, "
              f"CPU median {statistics.median(cpus):.3f} s  ({shown})")


if __name__ == "__main__":
    main()
