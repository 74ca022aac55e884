"""Shared fixtures: the `testbars` backend registered through its real entry point."""

from __future__ import annotations

import importlib
import sys

import pytest
from factories import PLUGINS


@pytest.fixture
def test_backends():
    """Put tests/plugins on sys.path so its dist-info registers `testbars` in `emo_cli.backends`."""
    sys.path.insert(0, str(PLUGINS))
    importlib.invalidate_caches()
    try:
        yield PLUGINS
    finally:
        sys.path.remove(str(PLUGINS))
        sys.modules.pop("emo_test_backends", None)
