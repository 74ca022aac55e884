"""How long reading a large manifest's YAML takes: libyaml's reader (what `emo validate` uses when
PyYAML has it) against PyYAML's pure-Python one (the fallback, and the source of error messages).

The manifest defines N portraits and N jobs, each job with its own settings (about 75 bytes a
job). Only the YAML reading is timed (`parse_document`): no schema, no files.

    python benchmarks/manifest_parse.py [--jobs 1000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def manifest_text(jobs: int) -> str:
    lines = ["version: 1", "portraits:"]
    lines += [f"  p{i}: faces/p{i}.jpg" for i in range(jobs)]
    lines += ["audio: {en: en.wav}", "jobs:"]
    lines += [f"  - {{portrait: p{i}, audio: en, settings: {{seed: {i}}}}}" for i in range(jobs)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", default="1000,10000", help="manifest sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per reader (the median is printed)")
    args = parser.parse_args()
    from emo_cli.manifest import document

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    readers = [("libyaml", document._FastLoader), ("pure Python", document._Loader)]
    for jobs in (int(n) for n in args.jobs.split(",")):
        text = manifest_text(jobs)
        figures = []
        for name, loader in readers:
            if loader is None:
                figures.append(f"{name}: not available")
                continue
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                document._parse(loader, text, lambda path: False)
                times.append(time.perf_counter() - began)
            figures.append(f"{name} {statistics.median(times):.2f} s")
        print(f"{jobs:>7} jobs ({len(text) / 1e3:.0f} KB): " + ", ".join(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
