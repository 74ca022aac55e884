"""measure_chunk: the per-chunk measures on a bounded sample of frames, as a render loop runs them."""

from __future__ import annotations

import numpy as np
import pytest
from factories import decoded_frames
from qc_faults import CAST_CHUNK, CHUNK_FRAMES, PORTRAIT

from emo_cli.backends.face import face_mesh_landmarks
from emo_cli.media.audio import decode_audio
from emo_cli.media.image import load_portrait
from emo_cli.quality import measure_chunk, reference_for
from emo_cli.quality.chunk import sample_indices
from emo_cli.quality.measures import face_geometry, frame_loudness


def chunk_samples(video, sample=4):
    frames = np.stack(decoded_frames(video))
    loudness = frame_loudness(decode_audio(video, 16000), 16000, 25, len(frames))
    reference = reference_for(frames[0], face_geometry(face_mesh_landmarks(frames[0])), load_portrait(PORTRAIT))
    return [
        measure_chunk(frames[start : start + CHUNK_FRAMES], index=i, start=start,
                      loudness=loudness[start : start + CHUNK_FRAMES], reference=reference, sample=sample)
        for i, start in enumerate(range(0, len(frames), CHUNK_FRAMES))
    ]  # fmt: skip


def test_the_sample_takes_the_loudest_and_the_quietest_frame():
    loudness = np.array([0.5, 0.1, 0.9, 0.4, 0.3, 0.6, 0.0, 0.2])
    picks = sample_indices(loudness, 4)
    assert len(picks) == 4 and 2 in picks and 6 in picks
    assert sample_indices(loudness, 20) == list(range(8))


@pytest.mark.slow
def test_a_four_frame_sample_locates_the_colour_cast_and_sees_the_mouth_move(qc_videos):
    cast = chunk_samples(qc_videos["cast"])
    assert all(len(c.frames) == 4 and c.figures.measured == 4 for c in cast)
    shifts = [c.figures.delta_e_face for c in cast]
    assert shifts[CAST_CHUNK] > 8 and max(s for i, s in enumerate(shifts) if i != CAST_CHUNK) < 4, shifts
    responses = [c.mouth_response for c in cast]
    assert min(responses) > 0.005 and np.mean(responses) > 0.015, responses  # opens when loud
    frozen = [c.mouth_response for c in chunk_samples(qc_videos["frozen"])]
    assert max(abs(r) for r in frozen) < 0.005, frozen
