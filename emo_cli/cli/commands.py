"""Imports every command module so that each registers itself on the app, then adds the
commands that installed packages contribute (`emo weights` is the emo backend's)."""

from emo_cli.cli import (  # noqa: F401
    app,
    init,
    inspect,
    plan,
    render,
    schema,
    status,
    validate,
    verify,
    version,
)
from emo_cli.cli.plugins import add_plugin_commands

add_plugin_commands(app)
