"""A named pipe, a device or a folder where a file belongs is refused at once, naming the file
and the field: never a hang (nobody writes the pipe), never an endless read (/dev/zero)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from factories import ASSETS, run_emo

from emo_cli.errors import InputError
from emo_cli.fsutil import NotRegularFileError, open_regular_file, sha256_file
from emo_cli.media.audio import decode_audio
from emo_cli.media.image import load_portrait
from emo_cli.media.probe import audio_duration

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")

DEADLINE_S = 60  # a hang fails the test through subprocess's timeout, not by waiting for ever


@pytest.fixture
def specials(tmp_path: Path) -> Path:
    """A project folder with good media, a named pipe, a folder and a symlink to /dev/zero."""
    shutil.copyfile(ASSETS / "astronaut.jpg", tmp_path / "astronaut.jpg")
    shutil.copyfile(ASSETS / "hello_en.wav", tmp_path / "hello_en.wav")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "zero.wav").symlink_to("/dev/zero")
    return tmp_path


def test_validate_refuses_pipes_devices_and_folders_as_inputs(specials):
    manifest = specials / "m.yaml"
    manifest.write_text(
        "version: 1\n"
        "defaults: {backend: testbars}\n"
        "portraits: {face: astronaut.jpg, piped: pipe, folder: folder.jpg, zero: /dev/zero}\n"
        "audio: {en: hello_en.wav, piped: pipe, zero: zero.wav}\n"
        "jobs: [{portrait: face, audio: en}]\n"
    )
    proc = run_emo("validate", str(manifest), timeout=DEADLINE_S)
    assert proc.returncode == 2
    pipe = specials / "pipe"
    assert proc.stderr.splitlines() == [
        f"{manifest}:3:41 portraits.piped: portrait {pipe} is a named pipe (FIFO), not an image file",
        f"{manifest}:3:55 portraits.folder: portrait {specials / 'folder.jpg'} is a folder, not an image file",
        f"{manifest}:3:73 portraits.zero: portrait /dev/zero is a character device, not an image file",
        f"{manifest}:4:34 audio.piped: audio {pipe} is a named pipe (FIFO), not an audio file",
        f"{manifest}:4:46 audio.zero: audio /dev/zero is a character device, not an audio file",
        f"{manifest}: 5 problems",
    ]


def test_a_pipe_as_the_manifest_or_the_signing_key_is_refused(specials):
    proc = run_emo("validate", str(specials / "pipe"), timeout=DEADLINE_S)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"{specials / 'pipe'} is a named pipe (FIFO), not a manifest file"
    manifest = specials / "m.yaml"
    manifest.write_text(
        "version: 1\n"
        "defaults: {backend: testbars}\n"
        "portraits: {face: astronaut.jpg}\n"
        "audio: {en: hello_en.wav}\n"
        "jobs: [{portrait: face, audio: en}]\n"
        "signing: {key: pipe, certs: folder.jpg}\n"
    )
    proc = run_emo("validate", str(manifest), timeout=DEADLINE_S)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[:2] == [
        f"{manifest}:6:16 signing.key: {specials / 'pipe'} cannot be read "
        "(it is a named pipe (FIFO), not a regular file)",
        f"{manifest}:6:29 signing.certs: {specials / 'folder.jpg'} cannot be read "
        "(it is a folder, not a regular file)",
    ]


@pytest.mark.parametrize(("command", "code"), [("verify", 2), ("inspect", 1)])
def test_verify_and_inspect_refuse_a_pipe(specials, command, code):
    proc = run_emo(command, str(specials / "pipe"), timeout=DEADLINE_S)
    assert proc.returncode == code
    assert f"{specials / 'pipe'} is a named pipe (FIFO), not a video file" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_every_reader_of_an_input_refuses_a_pipe(specials):
    """The library calls behind validate, plan (fingerprints) and render (decode), one by one.
    Each runs on a thread so that a regression shows as a failed join, not a stuck test run."""
    pipe = specials / "pipe"
    outcomes: dict[str, BaseException | None] = {}

    def attempt(name, call):
        try:
            call()
            outcomes[name] = None
        except BaseException as exc:  # noqa: BLE001 - recorded and asserted below
            outcomes[name] = exc

    calls = {
        "sha256_file": lambda: sha256_file(pipe),
        "open_regular_file": lambda: open_regular_file(pipe),
        "load_portrait": lambda: load_portrait(pipe),
        "audio_duration": lambda: audio_duration(pipe),
        "decode_audio": lambda: decode_audio(pipe, 16000),
    }
    threads = [threading.Thread(target=attempt, args=item, daemon=True) for item in calls.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    try:
        assert sorted(outcomes) == sorted(calls), f"still blocked: {sorted(set(calls) - set(outcomes))}"
        assert isinstance(outcomes["sha256_file"], NotRegularFileError)
        assert isinstance(outcomes["open_regular_file"], NotRegularFileError)
        for name in ("load_portrait", "audio_duration", "decode_audio"):
            assert isinstance(outcomes[name], InputError), (name, outcomes[name])
            assert "is a named pipe (FIFO)" in str(outcomes[name])
    finally:
        # Release any reader still blocked on the pipe, so no thread outlives the test.
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK) if any(t.is_alive() for t in threads) else None
        if fd is not None:
            os.close(fd)


def test_a_regular_file_reached_through_a_symlink_is_read(specials):
    (specials / "link.jpg").symlink_to(specials / "astronaut.jpg")
    with open_regular_file(specials / "link.jpg") as stream:
        assert stream.read() == (specials / "astronaut.jpg").read_bytes()


def test_symlink_loops_and_dangling_links_are_problems_not_tracebacks(specials):
    (specials / "loop1").symlink_to("loop2")
    (specials / "loop2").symlink_to("loop1")
    (specials / "dangling.jpg").symlink_to("nowhere.jpg")
    manifest = specials / "m.yaml"
    manifest.write_text(
        "version: 1\n"
        "defaults: {backend: testbars}\n"
        "portraits: {face: astronaut.jpg, looped: loop1, dangling: dangling.jpg}\n"
        "audio: {en: hello_en.wav, looped: loop2}\n"
        "jobs: [{portrait: face, audio: en}]\n"
        "signing: {key: loop1, certs: loop2}\n"
    )
    proc = run_emo("validate", str(manifest), timeout=DEADLINE_S)
    assert proc.returncode == 2, proc.stderr
    loop = "(Too many levels of symbolic links)"
    assert proc.stderr.splitlines() == [
        f"{manifest}:3:42 portraits.looped: portrait {specials / 'loop1'} cannot be read {loop}",
        f"{manifest}:3:59 portraits.dangling: portrait {specials / 'nowhere.jpg'} does not exist",
        f"{manifest}:4:35 audio.looped: audio {specials / 'loop2'} cannot be read {loop}",
        f"{manifest}:6:16 signing.key: {specials / 'loop1'} cannot be read {loop}",
        f"{manifest}:6:30 signing.certs: {specials / 'loop2'} cannot be read {loop}",
        f"{manifest}: 5 problems",
    ]
