"""Imports every command module so that each registers itself on the app."""

from emo_cli.cli import version  # noqa: F401
