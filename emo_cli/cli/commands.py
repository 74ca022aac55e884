"""Imports every command module so that each registers itself on the app."""

from emo_cli.cli import (  # noqa: F401
    dataset,
    init,
    inspect,
    plan,
    render,
    schema,
    status,
    train,
    validate,
    verify,
    version,
    weights,
)
