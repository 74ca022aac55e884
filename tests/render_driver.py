"""Render jobs described in a JSON file in a fresh process, printing events as JSON lines.

Used by the kill-and-resume tests: `python tests/render_driver.py spec.json`, with tests/plugins
on PYTHONPATH. The spec: {"output_dir": str, "resume": bool, "jobs": [make_job keyword args]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from factories import make_job, make_plan

from emo_cli.execution import render
from emo_cli.execution.results import RenderEvent


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    output_dir = Path(spec["output_dir"])
    jobs = [make_job(output_dir, **{k: (Path(v) if k in ("portrait", "audio") else v) for k, v in job.items()})
            for job in spec["jobs"]]  # fmt: skip

    def emit(event: RenderEvent) -> None:
        print(json.dumps(event.to_dict()), flush=True)

    summary = render(make_plan(output_dir, jobs), resume=spec.get("resume", True), events=emit)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
