"""Planning: from a checked manifest to jobs with content-addressed ids.

    make_plan(manifest) -> Plan        emo_cli.planning.plan
    plan_manifest(path) -> Plan        load_manifest + make_plan
    job_id(...) -> str                 emo_cli.planning.fingerprint (the one recipe)

`emo_cli.planning.job` (the dataclasses) stays importable without the manifest machinery;
the names above load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["job_id", "make_plan", "plan_manifest"]


def __getattr__(name: str) -> Any:
    if name in ("make_plan", "plan_manifest"):
        from emo_cli.planning import plan

        return getattr(plan, name)
    if name == "job_id":
        from emo_cli.planning.fingerprint import job_id

        return job_id
    raise AttributeError(f"module 'emo_cli.planning' has no attribute {name!r}")
