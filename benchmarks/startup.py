"""Start-up time of the light commands: `emo --help` and `emo validate manifests/demo.yaml`.

Each run is a fresh Python process (what a user or CI step pays), so imports are counted in
full; the script prints every run's wall time, the median and the best, the median CPU time
(user + system) of the process, and the load average it started with. On a shared machine
wall times swing with the neighbours; CPU time much less: compare medians of runs made in the
same session.

    python benchmarks/startup.py [--repeat 9] [--python .venv/bin/python]
    python benchmarks/startup.py --before ../emo-cli-old    # this checkout against another

`--python` picks the interpreter (e.g. another checkout's virtualenv) and `--cwd` runs the
commands from another checkout. `--before DIR` times another checkout of the project (run
with DIR first on the import path, with this interpreter) against this one, the two
interleaved run by run so that both see the same neighbours, and prints the speed-up
(before / now) of the medians and of the CPU times.

The commands run with bytecode caches, as an installed package has them (pip compiles them at
install time): PYTHONDONTWRITEBYTECODE is dropped from their environment, so the warm-up run
writes the `__pycache__` folders of a checkout that has none yet.
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


def cached_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, less PYTHONDONTWRITEBYTECODE (see the module's docstring), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {})}


def time_once(python: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    env = env or cached_env()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([python, *args], cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode} in {cwd}:\n{done.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(runs: list[tuple[float, float]]) -> tuple[float, float, float, str]:
    """(median wall, best wall, median CPU, every wall time) of `runs`."""
    walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
    shown = " ".join(f"{w:.3f}" for w in walls)
    return statistics.median(walls), min(walls), statistics.median(cpus), shown


def show(name: str, runs: list[tuple[float, float]]) -> None:
    median, best, cpu, shown = summary(runs)
    print(f"{name}: median {median:.3f} s, best {best:.3f} s, CPU median {cpu:.3f} s  ({shown})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="fresh processes per command")
    parser.add_argument("--python", default=sys.executable, help="interpreter with emo-cli installed")
    parser.add_argument("--cwd", type=Path, default=REPO, help="checkout whose manifests/ to use")
    parser.add_argument("--before", type=Path, help="another checkout to time against this one")
    args = parser.parse_args()

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.before is None:
        time_once(args.python, COMMANDS["emo --help"], args.cwd)  # warm the file cache
        for name, argv in COMMANDS.items():
            show(name, [time_once(args.python, argv, args.cwd) for _ in range(args.repeat)])
        return

    before_dir = args.before.resolve()
    before_env = cached_env({"PYTHONPATH": os.pathsep.join(filter(None, [str(before_dir),
                                                                          os.environ.get("PYTHONPATH")]))})
    for cwd, env in ((before_dir, before_env), (args.cwd, None)):
        time_once(args.python, COMMANDS["emo --help"], cwd, env)  # warm the file cache
    for name, argv in COMMANDS.items():
        old, new = [], []
        for _ in range(args.repeat):
            old.append(time_once(args.python, argv, before_dir, before_env))
            new.append(time_once(args.python, argv, args.cwd))
        show(f"{name} [before]", old)
        show(f"{name} [now]   ", new)
        (old_median, old_best, old_cpu, _), (new_median, new_best, new_cpu, _) = summary(old), summary(new)
        print(f"{name}: {old_median / new_median:.2f}x faster (median wall), {old_best / new_best:.2f}x (best), "
              f"{old_cpu / new_cpu:.2f}x (CPU)")


if __name__ == "__main__":
    main()
