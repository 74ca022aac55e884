"""Hostile YAML: alias bombs, cycles and deep nesting are refused at file:line, quickly; and the
manifest is read as YAML 1.2 core, so `no`, `on` and `yes` are the language codes they look like."""

from __future__ import annotations

import shutil
import time

import pytest
import yaml
from factories import ASSETS, run_emo

from emo_cli.errors import ManifestError
from emo_cli.manifest import document, load_manifest
from emo_cli.manifest.document import ALIAS_ALLOWANCE, MAX_DEPTH, parse_document
from emo_cli.planning import make_plan

HEAD = """\
version: 1
defaults: {backend: testbars}
portraits: {astronaut: astronaut.jpg}
audio: {en: hello_en.wav}
jobs: [{portrait: astronaut, audio: en}]
"""


def laughs(levels: int, fanout: int = 9) -> str:
    """The "billion laughs": each anchor lists the previous one `fanout` times (~540 bytes)."""
    lines = ["x0: &x0 [" + ", ".join(["lol"] * fanout) + "]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int) -> str:
    """Nested merge keys: PyYAML's flatten_mapping doubles the pairs at every level."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: {i}}}")
    return "\n".join(lines) + "\n"


def only_issue(text: str):
    document = parse_document(text)
    assert document.data is None
    (issue,) = document.issues
    return issue


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_bound():
    started = time.monotonic()
    issue = only_issue(laughs(10))
    assert time.monotonic() - started < 5
    # x4 is the first anchor whose expansion passes the bound; its first alias is on line 5.
    assert issue.position == (5, 10)
    assert issue.message.startswith("aliases expand to more than ")
    assert "write the values out or nest fewer aliases" in issue.message


def test_nested_merge_keys_are_resolved_once_per_mapping():
    started = time.monotonic()
    document = parse_document(merge_bomb(60))
    assert time.monotonic() - started < 5
    assert document.issues == ()
    assert document.data["m59"] == {"a": 1, "b": 2, **{f"k{i}": i for i in range(1, 60)}}


def test_merge_keys_let_own_keys_override_without_a_duplicate_key_error():
    document = parse_document(
        "base: &b {fps: 25, seed: 1}\nmore: &m {seed: 2, size: 3}\nd: {<<: [*b, *m], fps: 30}\n"
    )
    assert document.issues == ()
    # Own keys win, then earlier merged mappings over later ones (the YAML merge key rules).
    assert document.data["d"] == {"fps": 30, "seed": 1, "size": 3}
    assert document.position(("d", "seed")) == (1, 26)  # written in the anchor's mapping


def test_a_duplicate_key_is_still_reported():
    document = parse_document("a: 1\nb: 2\na: 3\n")
    (issue,) = document.issues
    assert issue.path == ("a",) and issue.position == (3, 1)
    assert issue.message == "duplicate key 'a' (first written on line 1)"


def test_an_alias_inside_its_own_anchor_is_a_cycle():
    issue = only_issue("a: &a [1, *a]\n")
    assert issue.position == (1, 11)
    assert issue.message == "an alias refers to a node that contains it (a cycle)"


def test_aliases_that_stack_nesting_past_the_bound_are_refused():
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    issue = only_issue("\n".join(lines) + "\n")
    assert issue.message.startswith(f"aliases nest the data more than {MAX_DEPTH} levels deep")


@pytest.mark.parametrize("style", ["flow", "block"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 5000])
def test_deep_nesting_is_refused_not_a_recursion_error(style, levels):
    if style == "flow":
        text = "x: " + "[" * levels + "]" * levels + "\n"
    else:
        text = "x:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(levels))
    issue = only_issue(text)
    assert (
        issue.message == f"the YAML is nested more than {MAX_DEPTH} levels deep; a manifest needs a handful"
    )
    assert issue.position is not None


def test_nesting_up_to_the_bound_is_read():
    levels = MAX_DEPTH - 1  # the root mapping is the first level
    document = parse_document("x: " + "[" * levels + "]" * levels + "\n")
    assert document.issues == ()


def test_a_settings_block_shared_by_many_jobs_is_not_a_bomb():
    jobs = "".join(f"  - {{portrait: p{i}, audio: a, settings: *common}}\n" for i in range(3000))
    text = "common: &common {fps: 25, seed: 7, chunk_frames: 60, warp: {a: 1, b: 2, c: 3}}\njobs:\n" + jobs
    document = parse_document(text)
    assert document.issues == ()
    assert len(document.data["jobs"]) == 3000 and document.data["jobs"][-1]["settings"]["warp"]["c"] == 3
    assert 3000 * 8 > ALIAS_ALLOWANCE  # the shared block expands past the flat allowance


def test_the_cli_refuses_a_540_byte_bomb_at_file_line_without_a_traceback(tmp_path):
    manifest = tmp_path / "bomb.yaml"
    manifest.write_text(HEAD + laughs(10))
    assert manifest.stat().st_size < 800
    proc = run_emo("validate", str(manifest), timeout=60)
    assert proc.returncode == 2
    assert f"{manifest}:10:10 aliases expand to more than" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_the_cli_refuses_deep_nesting_at_file_line_without_a_traceback(tmp_path):
    manifest = tmp_path / "deep.yaml"
    manifest.write_text(HEAD + "defaults2: " + "[" * 3000 + "]" * 3000 + "\n")
    proc = run_emo("validate", str(manifest), timeout=60)
    assert proc.returncode == 2
    assert (
        f"{manifest}:6:{12 + MAX_DEPTH - 1} the YAML is nested more than {MAX_DEPTH} levels deep"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr + proc.stdout


# --- YAML 1.2 core scalars ------------------------------------------------------------------

LOCALIZED = """\
version: 1
defaults: {backend: fixture, seed: 010}
portraits: {astronaut: astronaut.jpg, 1e3: astronaut.jpg}
audio:
  no: norsk.wav
  on: hello_en.wav
  yes: hello_fr.wav
  off: hello_es.wav
  y: hello_en.wav
  n: hello_fr.wav
matrix:
  portraits: [astronaut, 1e3]
  audio: [no, on, yes, off, y, n]
"""


def test_a_localization_matrix_keeps_no_on_and_yes_as_language_codes(fixture_backend, write_manifest):
    path = write_manifest(LOCALIZED)
    shutil.copyfile(ASSETS / "hello_en.wav", path.parent / "norsk.wav")
    manifest = load_manifest(path)
    assert list(manifest.audio) == ["no", "on", "yes", "off", "y", "n"]
    assert list(manifest.portraits) == ["astronaut", "1e3"]
    assert [job.name for job in manifest.jobs][:6] == [
        "astronaut/no", "astronaut/on", "astronaut/yes", "astronaut/off", "astronaut/y", "astronaut/n",
    ]  # fmt: skip
    assert manifest.jobs[6].name == "1e3/no"
    assert manifest.audio["no"].path.name == "norsk.wav"
    plan = make_plan(manifest)
    assert [job.output.relative_to(manifest.output_dir).as_posix() for job in plan.jobs][:3] == [
        "astronaut/no.mp4", "astronaut/on.mp4", "astronaut/yes.mp4",
    ]  # fmt: skip
    assert plan.jobs[0].settings.seed == 10  # YAML 1.2: a leading zero is not octal


def test_yaml_1_2_scalars():
    data = parse_document(
        "a: [no, on, yes, off, y, n, true, false, True, ~, null, 010, 0o10, 0x10, 1:30, 1_000, 2.5]\n"
    ).data
    assert data["a"] == ["no", "on", "yes", "off", "y", "n", True, False, True, None, None,
                         10, 8, 16, "1:30", "1_000", 2.5]  # fmt: skip


def test_a_yaml_1_1_boolean_where_true_or_false_belongs_says_to_write_it(fixture_backend, write_manifest):
    path = write_manifest(
        """
        version: 1
        defaults: {backend: fixture}
        policy: {require_consent: yes}
        portraits: {astronaut: astronaut.jpg}
        audio: {en: hello_en.wav}
        jobs: [{portrait: astronaut, audio: en}]
        """
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (3, "policy.require_consent")
    assert problem.message == (
        "expected true or false, got a string ('yes') "
        "(manifests are YAML 1.2, where yes/no/on/off are text: write true or false)"
    )


def test_a_manifest_too_large_to_parse_is_refused_before_it_is_read_whole(tmp_path):
    from emo_cli.manifest.loader import MAX_MANIFEST_BYTES

    manifest = tmp_path / "huge.yaml"
    with manifest.open("w") as out:
        out.write(HEAD)
        line = "# " + "x" * 1021 + "\n"
        for _ in range(MAX_MANIFEST_BYTES // len(line) + 1):
            out.write(line)
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert str(info.value.problems[0]) == (
        f"{manifest} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; split it into several manifests"
    )


def test_a_control_character_is_a_problem_at_its_line_not_a_traceback():
    issue = only_issue("version: 1\nname: ab\x01c\n")
    assert issue.position == (2, 9)
    assert issue.message == "character U+0001 is not allowed in YAML"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_the_yaml_encodings_are_read(fixture_backend, write_manifest, encoding):
    path = write_manifest(HEAD.replace("testbars", "fixture"))
    text = path.read_text()
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    assert [job.name for job in load_manifest(path).jobs] == ["astronaut/en"]


READER_CORPUS = [
    "base: &b {fps: 25, seed: 1}\nmore: &m {seed: 2, size: 3}\nd: {<<: [*b, *m], fps: 30}\n",
    "a: [no, on, yes, off, y, n, true, True, ~, null, 010, 0o10, 0x10, 1:30, 1_000, 2.5, .inf, 'x', \"y\"]\n"
    "b: |\n  block\n  text\nc: >-\n  folded\n  text\n",
    "a: &a [1, *a]\n",
    "x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
    "a: 1\nb: 2\na: 3\n",
    "? [a]\n: b\n",
    "k: !!binary aGVsbG8=\nt: !!timestamp 2001-12-14\nd: 2027-01-01\n",
    "jobs:\n  - {portrait: 1e3, audio: true}\n",
    '名前: 値\nü: [ö, ä]\nlong: "\\u00e9\\t"\n',
    "# only a comment\n",
    "- a\n- b\n",
    laughs(10),
]


@pytest.mark.skipif(document._FastLoader is None, reason="PyYAML without libyaml")
@pytest.mark.parametrize("text", READER_CORPUS, ids=range(len(READER_CORPUS)))
def test_libyaml_and_pyyaml_readers_build_the_same_document(text):
    """libyaml reads manifests (fast); PyYAML's reader is the reference and gives the messages."""

    def read(loader):
        try:
            return document._parse(loader, text, lambda path: path[:1] == ("jobs",))
        except yaml.YAMLError as exc:
            return type(exc).__name__, getattr(exc, "problem", None)

    assert read(document._FastLoader) == read(document._Loader)
