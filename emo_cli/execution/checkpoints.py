"""Named points in the render loop where a test can freeze the process, to kill it there.

Resume tests must interrupt a render at an exact moment (mid-chunk, during the final mux)
without sleeping and hoping. When `EMO_TEST_PAUSE_AT` lists a point (comma-separated) and
`EMO_TEST_PAUSE_FIFO` names a FIFO, reaching that point writes the point's name into the FIFO
(blocking until the test reads it) and then blocks opening the FIFO again until the test
either kills the process or opens the FIFO for writing to let it go on. Unset, this costs one
environment lookup.

Points: `plan` (`api.render_manifest` is about to plan the manifest), `render:K` (before chunk K is rendered; chunks before K - 1 are committed, chunk
K - 1 is fed to its encoder, which may still be finishing: the loop commits a chunk once half
of the next one is fed), `encode:K` (half of chunk K's frames are in ffmpeg's pipe; chunks
before K are committed), `commit:K` (chunk K's segment and state are in place, the journal
does not list them yet; half of chunk K + 1, if any, is fed), `mux:start` (every chunk is
committed, the mux has not begun), `mux:running` (ffmpeg is writing the output's temporary;
the work dir's unsigned MP4 when signing is on), `sign` (the unsigned MP4 is complete, signing
has not begun), `sign:written` (the signed temporary beside the output is complete, not yet
renamed into place).

`render:K` may also name a job, `render:1@anna/fr`, to pause only that job's chunk K: a test
with several workers freezes each of them on a job of its choosing. Several processes paused at
once would let each other go on (a process announcing opens the FIFO for writing, which is what
releases the others): when `<FIFO>.release` exists, a paused process waits on it instead, and
opening it for writing releases them all.
"""

from __future__ import annotations

import os

PAUSE_AT_ENV = "EMO_TEST_PAUSE_AT"
PAUSE_FIFO_ENV = "EMO_TEST_PAUSE_FIFO"


def pause_point(name: str, job: str | None = None) -> None:
    points = os.environ.get(PAUSE_AT_ENV)
    if not points:
        return
    listed = points.split(",")
    if name not in listed:
        if job is None or f"{name}@{job}" not in listed:
            return
        name = f"{name}@{job}"
    fifo = os.environ[PAUSE_FIFO_ENV]
    with open(fifo, "w") as announce:
        announce.write(name + "\n")
    release_fifo = fifo + ".release"
    with open(release_fifo if os.path.exists(release_fifo) else fifo) as release:
        release.read()
