"""Blinks: a shut lid is smooth skin with one dark lash line, with no trace of the iris."""

from __future__ import annotations

import numpy as np
from factories import PORTRAIT
from warp_measure import RATE, fixture_speech, job_input

from emo_cli.backends.warp import WarpBackend


def test_a_shut_lid_is_clean_skin_ending_in_the_lashes():
    audio, _ = fixture_speech("en")
    renderer = WarpBackend().start_job(job_input(PORTRAIT, audio[: 3 * RATE], head_motion=0, blink_rate=60))
    shut = int(np.argmax(renderer.params[:, 2]))
    assert renderer.params[shut, 2] > 0.99
    frame, portrait = renderer.render_frame(shut), renderer.frame
    x0, y0, x1, _ = renderer.rig.roi
    grey = lambda img: img.astype(np.float64) @ [0.299, 0.587, 0.114]  # noqa: E731
    for pixels, gap, depth, _ in renderer.rig.eye_pixels:
        ys, xs = y0 + pixels // (x1 - x0), x0 + pixels % (x1 - x0)
        # Between the lid line and the lashes at the lower lid, away from the eye corners.
        lid = (depth > 0.3) & (depth < 0.75) & (gap > 0.5 * gap.max())
        before, after = grey(portrait[ys[lid], xs[lid]]), grey(frame[ys[lid], xs[lid]])
        assert before.min() < 90  # the open eye shows its dark iris and pupil there...
        assert after.min() > 150 and after.std() < 6, (after.min(), after.std())  # ...the lid, smooth skin
        lashes = (depth > 0.95) & (gap > 4)  # along the lower lid, where the lid edge comes to rest
        assert grey(frame[ys[lashes], xs[lashes]]).mean() < after.mean() - 25
