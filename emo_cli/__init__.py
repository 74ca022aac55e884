"""emo-cli: one portrait plus an audio track -> a talking or singing video.

The Python API lives in `emo_cli.api` and is re-exported here (each name loads on first use,
so `import emo_cli` stays light):

    load_manifest(path) -> Manifest             parse and check a manifest
    validate_manifest(path) -> [Problem]        every problem `emo validate` reports
    plan_manifest(path) -> Plan                 jobs with content-addressed ids
    render(plan, executor=...) -> RunSummary    render a plan's jobs
    render_manifest(path, ...) -> RunSummary    plan_manifest, then render
    get_backend_class(name)                     a backend by name
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "__version__",
    "get_backend_class",
    "load_manifest",
    "plan_manifest",
    "render",
    "render_manifest",
    "validate_manifest",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("emo-cli")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0.0.0+local"
        globals()["__version__"] = value
        return value
    if name in __all__:
        from emo_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'emo_cli' has no attribute {name!r}")
