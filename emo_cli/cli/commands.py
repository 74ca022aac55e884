"""Imports every command module so that each registers itself on the app."""

from emo_cli.cli import init, inspect, plan, render, schema, status, validate, version, weights  # noqa: F401
