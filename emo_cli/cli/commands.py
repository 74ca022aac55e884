"""Imports every command module so that each registers itself on the app."""

from emo_cli.cli import inspect, render, version  # noqa: F401
