"""Start-up time of the light commands: `emo --help` and `emo validate manifests/demo.yaml`.

Each run is a fresh Python process (what a user or CI step pays), so imports are counted in
full; the script prints every run, the median and the best, and the load average it started
with (on a shared machine the figures vary: compare medians of runs made in the same session).

    python benchmarks/startup.py [--repeat 9] [--python .venv/bin/python]

`--python` picks the interpreter (e.g. another checkout's virtualenv) so two versions of the
project can be compared in one session; `--cwd` runs the commands from another checkout.
"""

from __future__ import annotations

import argparse
import os
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


def time_once(python: str, args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run([python, *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


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
        shown = " ".join(f"{r:.3f}" for r in runs)
        print(f"{name}: median {statistics.median(runs):.3f} s, best {min(runs):.3f} s  ({shown})")


if __name__ == "__main__":
    main()
