"""Imports every command module so that each registers itself on the app."""

from emo_cli.cli import (  # noqa: F401
    dataset,
    init,
    inspect,
    plan,
    qc,
    render,
    report,
    schema,
    status,
    validate,
    verify,
    version,
    weights,
)
