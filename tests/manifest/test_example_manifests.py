"""The committed example manifests: valid, and expanding to the jobs their comments promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from emo_cli.backends.registry import get_backend_class
from emo_cli.backends.warp import WarpBackend
from emo_cli.manifest import Manifest, load_manifest
from emo_cli.manifest.document import parse_document

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def parsed(name: str) -> Manifest:
    path = MANIFESTS / name
    return Manifest(path=path, display=name, document=parse_document(path.read_text()))


def test_demo_is_one_astronaut_saying_hello_at_25_fps_512px():
    manifest = parsed("demo.yaml")
    [job] = manifest.jobs
    assert job.name == "astronaut/en"
    assert job.settings["backend"] == "warp"
    assert (job.settings["fps"], job.settings["resolution"]) == (25, 512)
    assert manifest.output_dir == MANIFESTS / "out"
    assert manifest.portraits["astronaut"].path == MANIFESTS / "assets" / "astronaut.jpg"


def test_localized_is_one_portrait_in_three_languages():
    manifest = parsed("localized.yaml")
    assert [job.name for job in manifest.jobs] == ["astronaut/en", "astronaut/fr", "astronaut/es"]
    assert manifest.output_dir == MANIFESTS / "out" / "localized"


@pytest.mark.parametrize("name", ["demo.yaml", "localized.yaml"])
def test_example_manifests_validate(name):
    from emo_cli.api import validate_manifest

    assert get_backend_class("warp") is WarpBackend

    assert validate_manifest(MANIFESTS / name) == []
    assert load_manifest(MANIFESTS / name).jobs
