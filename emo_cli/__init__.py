"""emo-cli: one portrait plus an audio track -> a talking or singing video.

Public API (each import is lazy so that `import emo_cli` stays light):
    load_manifest(path) -> Manifest      emo_cli.manifest
    make_plan(manifest) -> Plan          emo_cli.planning
    render(plan, ...) -> RunSummary      emo_cli.execution
    get_backend_class(name)              emo_cli.backends
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emo-cli")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
