"""`emo validate --deep`: the face in each portrait a job uses, found with the bundled detector.

A render stops at a portrait with no face, or one too small to animate, only when that job
starts, possibly hours into a batch; this check runs the same detector (mediapipe's bundled
model, `emo_cli.backends.face`, no torch) at validate time and reports each portrait at its
file:line. It costs a detector load (about a second) plus a few tens of milliseconds per
portrait, so it is asked for with `--deep` rather than run by every `emo validate`.

Several faces are a problem only when the render's choice (the largest) is not clear-cut: a
second face at least a quarter of the largest one's area.
"""

from __future__ import annotations

from emo_cli.backends.warp.rig import MIN_FACE_PX  # the floor a render enforces
from emo_cli.errors import InputError, Problem
from emo_cli.manifest.model import Manifest

# A second face with at least this fraction of the largest's area makes the choice ambiguous.
AMBIGUOUS_FACE_AREA = 0.25


def face_problems(manifest: Manifest) -> list[Problem]:
    """One problem per portrait used by a job whose face is missing, too small or ambiguous.

    Portraits that cannot be read are left out: the manifest's own checks report them.
    """
    from emo_cli.backends.face import detect_faces
    from emo_cli.media.image import load_portrait

    used = {spec.portrait for spec in manifest.jobs}
    problems = []
    for name, source in manifest.portraits.items():
        if name not in used:
            continue
        try:
            rgb = load_portrait(source.path)
        except InputError:
            continue
        message = face_message(source.path.name, detect_faces(rgb))
        if message is not None:
            problems.append(manifest.problem(source.where, message))
    return problems


def face_message(shown: str, faces: list) -> str | None:
    """What is wrong with the faces (`FaceBox`es, largest first) found in portrait `shown`."""
    if not faces:
        return (f"no face found in {shown} by the face detector; use a photo with one clearly visible, "
                f"roughly frontal human face at least {MIN_FACE_PX} pixels wide")  # fmt: skip
    face = faces[0]
    if max(face.width, face.height) < MIN_FACE_PX:
        return (f"the face in {shown} is only {face.width:.0f}x{face.height:.0f} pixels; at least "
                f"{MIN_FACE_PX} are needed: use a closer or larger portrait")  # fmt: skip
    rivals = [other for other in faces[1:] if other.area >= AMBIGUOUS_FACE_AREA * face.area]
    if rivals:
        return (f"{len(faces)} faces found in {shown}; the render would animate the largest "
                f"({face.width:.0f}x{face.height:.0f} pixels at x={face.x0:.0f}, y={face.y0:.0f}): crop the "
                "portrait to the one face to animate")  # fmt: skip
    return None
