"""Shared fixtures.

`test_backends`: puts tests/plugins on sys.path so its dist-info registers the `testbars`
backend in the `emo_cli.backends` entry-point group (the real plugin mechanism).

`emo_config_dir` (autouse, session-wide): points `EMO_CONFIG_DIR` at a temporary folder (and
hides `EMO_C2PA_KEY` / `EMO_C2PA_CERTS`), so the local C2PA signing identity that renders
create is made there once, never in the user's config dir. Subprocesses and Ray workers inherit it. Tests of the identity itself point it at
their own `tmp_path`.

`fixture_backend`: a tiny real Backend, registered as "fixture" through the public
`register_backend` mechanism, with an options schema, so manifest and planning tests do not
depend on which built-in backends are importable.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from factories import PLUGINS

from emo_cli.backends import registry
from emo_cli.backends.base import Backend, JobInput, JobRenderer

ASSETS = Path(__file__).resolve().parents[1] / "manifests" / "assets"


# Tests that take over ~10 s each on the 2-core development machine (or whose module fixture
# does), as node-id prefixes: marked `slow` here, in one list, so `pytest -m "not slow"` is a
# quick inner loop while `make test` (and CI) still runs everything. Figures from
# `pytest --durations=40`; a test listed here is not skipped, only marked.
SLOW = (
    "tests/backends/emo/test_emo_model.py::test_audio_changes_the_clip",
    "tests/backends/emo/test_emo_model.py::test_batched_cfg_and_reference_once_per_clip",
    "tests/backends/emo/test_emo_model.py::test_clip_shape_and_determinism",
    "tests/backends/emo/test_emo_model.py::test_guidance_and_dpm_solver",
    "tests/backends/emo/test_emo_model.py::test_motion_frames_and_head_speed_change_the_clip",
    "tests/backends/emo/test_emo_model.py::test_reference_image_changes_the_clip",
    "tests/backends/emo/test_emo_model.py::test_save_and_load_round_trip",
    "tests/backends/emo/test_emo_model.py::test_unconditional_rows_ignore_reference_and_audio",
    "tests/backends/emo/test_emo_render.py::test_chunks_that_cut_clips",
    "tests/backends/emo/test_emo_render.py::test_render_loop_with_chunks_and_resume_from_disk",
    "tests/backends/emo/test_emo_render.py::test_same_inputs_render_the_same",
    "tests/backends/emo/test_emo_render.py::test_sigkill_mid_render",
    "tests/backends/warp/test_warp_quality.py",
    "tests/cli/test_render_cli.py::test_ctrl_c_keeps_finished_chunks",
    "tests/cli/test_render_cli.py::test_json_events_exit_codes_and_resume",
    "tests/cli/test_render_scaleout.py",
    "tests/execution/test_kill_resume.py",
    "tests/execution/test_ray.py",
    "tests/execution/test_ray_actors.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def emo_config_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("emo-config")
    # A signing key configured in the caller's environment must not sign test renders.
    names = ("EMO_CONFIG_DIR", "EMO_C2PA_KEY", "EMO_C2PA_CERTS")
    previous = {name: os.environ.pop(name, None) for name in names}
    os.environ["EMO_CONFIG_DIR"] = str(folder)
    try:
        yield folder
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class FixtureBackend(Backend):
    """Options-only backend: manifest and planning never call start_job."""

    name = "fixture"
    version = "1.0"
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "gain": {"type": "number", "minimum": 0, "default": 1.0},
            "mode": {"enum": ["calm", "lively"], "default": "calm"},
            "weights": {"type": "string", "default": "tiny"},
        },
    }

    @classmethod
    def weights_identity(cls, options: Mapping[str, Any]) -> str:
        return f"fixture-weights:{options['weights']}"

    def start_job(self, job: JobInput) -> JobRenderer:
        raise NotImplementedError("the fixture backend only describes itself")


@pytest.fixture
def fixture_backend(monkeypatch: pytest.MonkeyPatch) -> type[FixtureBackend]:
    monkeypatch.setitem(registry._registered, FixtureBackend.name, FixtureBackend)
    return FixtureBackend


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    """A folder with the demo portrait and the three demo audio tracks."""
    for name in ("astronaut.jpg", "hello_en.wav", "hello_fr.wav", "hello_es.wav"):
        shutil.copyfile(ASSETS / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def write_manifest(media_dir: Path) -> Callable[..., Path]:
    """write_manifest(yaml_text, name="m.yaml") -> path, beside the media files."""

    def write(text: str, name: str = "m.yaml") -> Path:
        path = media_dir / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


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
