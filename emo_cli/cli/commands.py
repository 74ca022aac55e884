"""Imports every command module so that each registers itself on the app. Commands that
installed packages contribute (`emo weights` is the emo backend's) join through `plugins`."""

from emo_cli.cli import (  # noqa: F401
    clean,
    dataset,
    init,
    inspect,
    plan,
    qc,
    render,
    report,
    schema,
    status,
    train,
    validate,
    verify,
    version,
)
