"""The install: supported Pythons, the split locks and what an installed environment holds.

The locks are checked against pyproject.toml (a dependency added without re-locking fails
here, naming `requirements/lock.sh`), against each other (one version per package everywhere)
and for the promises the README makes: hashes on every pin, one OpenCV, no unused packages.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from factories import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REQUIREMENTS = REPO / "requirements"
LOCKS = ("core", "diffusion", "ray", "test")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Distributions that install the top-level `cv2` package: two of them overwrite each other's files.
CV2_PROVIDERS = {
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
}
# Declared once and never imported by emo-cli or its tests.
UNUSED = {"pocketsphinx", "ffmpeg-python", "pydub"}

sys.path.insert(0, str(REQUIREMENTS))
import check_python  # noqa: E402


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (pinned version, [sha256 hashes])} of a hashed requirements file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if pin:
            current = canonicalize_name(pin.group(1))
            assert current not in pins, f"{path.name}: {current} pinned twice"
            pins[current] = (pin.group(2), [])
        elif (digest := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line)) and current:
            pins[current][1].append(digest.group(1))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{path.name}: unexpected line {line!r}")
    return pins


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[str, tuple[str, list[str]]]]:
    return {name: read_lock(REQUIREMENTS / f"{name}.txt") for name in LOCKS}


def no_deps_in() -> tuple[dict[str, list[str]], dict[str, dict[str, list[str]]], set[str]]:
    """requirements/no-deps.in as ({section: [pinned names]}, {section: {package: [requirements
    it declares that are skipped on purpose]}}, {names the core lock leaves out})."""
    pins: dict[str, list[str]] = {}
    skipped: dict[str, dict[str, list[str]]] = {}
    omitted: set[str] = set()
    section = name = None
    for line in (REQUIREMENTS / "no-deps.in").read_text().splitlines():
        if heading := re.match(r"^\[([\w-]+)\]$", line):
            section = heading.group(1)
            pins[section], skipped[section] = [], {}
        elif pin := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+$", line):
            name = canonicalize_name(pin.group(1))
            pins[section].append(name)
        elif re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", line):
            assert section == "omit-from-core", line
            omitted.add(canonicalize_name(line))
        elif skip := re.match(r"^# skipped: (?:(\S+) requires )?(.+)$", line):
            package = canonicalize_name(skip.group(1) or name)
            reqs = [canonicalize_name(s.strip()) for s in skip.group(2).split(",")]
            skipped[section].setdefault(package, []).extend(reqs)
    return pins, skipped, omitted


# -- Python versions ------------------------------------------------------------------------------


def test_requires_python_is_the_range_the_checker_enforces():
    spec = check_python.requires_python()
    assert spec == PYPROJECT["requires-python"] == ">=3.11,<3.13"
    assert [check_python.satisfies(v, spec) for v in [(3, 10, 14), (3, 11, 0), (3, 12, 11), (3, 13, 0)]] == [
        False, True, True, False,
    ]  # fmt: skip
    assert check_python.problem(sys.version_info, sys.executable, spec) is None


def fake_python(tmp_path: Path, version: tuple[int, int, int]) -> Path:
    """An executable that runs a script as the real interpreter would, but reports `version`."""
    fake = tmp_path / f"python{version[0]}.{version[1]}"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.version_info = {(*version, 'final', 0)!r}\n"
        f"sys.executable = {str(fake)!r}\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("version", [(3, 10, 14), (3, 13, 0)])
@pytest.mark.parametrize("target", ["demo", "test"])
def test_make_refuses_an_unsupported_python_before_installing_anything(tmp_path, version, target):
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), target, f"PYTHON={fake_python(tmp_path, version)}",
         f"VENV={venv}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    found = ".".join(map(str, version))
    assert (
        f"emo-cli supports Python >=3.11,<3.13 (pyproject.toml requires-python), but {tmp_path}"
        in result.stderr
    )
    assert f"is Python {found}." in result.stderr
    assert "make demo PYTHON=python3.11" in result.stderr
    assert not venv.exists()


def test_the_checker_passes_this_interpreter():
    result = subprocess.run(
        [sys.executable, str(REQUIREMENTS / "check_python.py")], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


# -- the locks ------------------------------------------------------------------------------------


def test_every_pin_has_a_hash_and_one_version_in_every_lock(locks):
    versions: dict[str, set[str]] = {}
    for name, pins in locks.items():
        for package, (version, hashes) in pins.items():
            assert hashes, f"{name}.txt: {package}=={version} has no --hash"
            versions.setdefault(package, set()).add(version)
    assert {package: v for package, v in versions.items() if len(v) > 1} == {}


def test_locks_nest_by_purpose(locks):
    core, diffusion, ray, test = (set(locks[name]) for name in LOCKS)
    assert core <= diffusion and core <= ray and diffusion | ray <= test
    assert not core & {
        "torch",
        "ray",
        "transformers",
        "diffusers",
        "pytest",
        "ruff",
        "scipy-stubs",
        "hypothesis",
    }
    assert "ray" not in diffusion and "torch" not in ray
    assert locks["diffusion"]["torch"][0].split("+")[0] == "2.13.0" == locks["test"]["torch"][0].split("+")[0]


def _requirement_is_locked(
    requirement: Requirement, pins: dict[str, tuple[str, list[str]]], lock: str
) -> None:
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement} is in pyproject.toml but not in {lock}.txt: run requirements/lock.sh"
    version = Version(pins[name][0])
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{lock}.txt pins {name}=={version}, outside pyproject.toml's {requirement}: run requirements/lock.sh"
    )


@pytest.mark.parametrize(("lock", "groups"), [("core", []), ("diffusion", ["diffusion"]), ("ray", ["ray"]),
                                              ("test", ["diffusion", "ray", "dev"])])  # fmt: skip
def test_each_lock_covers_its_part_of_pyproject(locks, lock, groups):
    wanted = [Requirement(r) for r in PYPROJECT["dependencies"]]
    wanted += [Requirement(r) for group in groups for r in PYPROJECT["optional-dependencies"][group]]
    for requirement in wanted:
        _requirement_is_locked(requirement, locks[lock], lock)


def test_one_opencv_and_no_unused_packages(locks):
    for name, pins in locks.items():
        assert set(pins) & CV2_PROVIDERS == {"opencv-contrib-python"}, name
        assert not set(pins) & UNUSED, name
    assert not {"pywavelets", "psutil"} & set(locks["core"]), "only the tests use these"
    declared = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["dependencies"]}
    assert not declared & (UNUSED | {"pywavelets", "psutil"})
    assert declared & CV2_PROVIDERS == {"opencv-contrib-python"}


def test_no_deps_locks_pin_what_no_deps_in_lists_with_hashes(locks):
    pins, _, omitted = no_deps_in()
    for section in ("core", "test"):
        locked = read_lock(REQUIREMENTS / f"no-deps-{section}.txt")
        assert sorted(locked) == sorted(pins[section])
        assert all(hashes for _, hashes in locked.values())
    # What the core lock leaves out is what only mediapipe's jax needs, and the test lock has it.
    assert omitted == {"jax", "jaxlib", "ml-dtypes", "opt-einsum", "scipy"}
    assert not omitted & set(locks["core"]) and omitted <= set(locks["test"])
    assert "# Left out on purpose" in (REQUIREMENTS / "core.txt").read_text()


def test_committed_requirements_name_no_machine_paths():
    for path in sorted(REQUIREMENTS.iterdir()):
        text = path.read_text()
        assert not re.search(r"(^|[\s=])/(tmp|opt|work|root|home)/", text, re.MULTILINE), path.name


# -- the installed environment --------------------------------------------------------------------


def test_installed_environment_has_one_opencv():
    installed = {canonicalize_name(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    assert installed & CV2_PROVIDERS == {"opencv-contrib-python"}


def test_pip_check_reports_only_the_requirements_skipped_on_purpose():
    _, sections, _ = no_deps_in()
    skipped = {(package, requirement) for packages in sections.values() for package, reqs in packages.items()
               for requirement in reqs}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    broken = set()
    for line in result.stdout.splitlines():
        if line == "No broken requirements found.":
            continue
        missing = re.match(r"^(\S+) [^ ]+ requires (\S+), which is not installed\.$", line)
        assert missing, f"pip check: {line}"
        broken.add((canonicalize_name(missing.group(1)), canonicalize_name(missing.group(2))))
    assert broken <= skipped
