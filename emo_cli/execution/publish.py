"""Publishing a job's output: mux the committed segments with the audio, sign, write the sidecar.

Everything the output says about itself comes from one `ProvenanceRecord`. The output appears
atomically: without signing, the mux writes a temporary beside the output and renames it into
place; with signing, it muxes into the work dir, signs into a temporary beside the output and
renames that, so a kill at any point leaves no output or a complete, signed one.
"""

from __future__ import annotations

from emo_cli.execution.checkpoints import pause_point
from emo_cli.execution.results import failing_as
from emo_cli.execution.workdir import WorkDir
from emo_cli.fsutil import remove_stale_temporaries, sha256_file
from emo_cli.media.formats import MP4, OutputFormat
from emo_cli.media.mux import mux
from emo_cli.planning.job import Job
from emo_cli.provenance.credentials import sign_video
from emo_cli.provenance.record import ProvenanceRecord
from emo_cli.provenance.tags import write_sidecar


def publish(
    job: Job, work: WorkDir, record: ProvenanceRecord, chunks: int, fmt: OutputFormat = MP4
) -> tuple[str, str]:
    """Mux chunks 0..`chunks`-1 and the encoded audio into `job.output`, sign it (when the record
    has a signer), write its sidecar; returns the sha256 of the output and of its sidecar.

    Raises:
        JobFailed: ffmpeg or the signer failed (the chunks stay for the next run).
    """

    def running() -> None:
        pause_point("mux:running")

    with failing_as(job, f"{job.field}, mux into {job.output}"):
        work.guard()
        concat = work.write_concat_list(chunks)
        metadata = record.container_metadata()
        if record.signer is None:
            mux(concat, work.audio, job.output, metadata=metadata, audio_encoded=True, fmt=fmt,
                while_running=running)  # fmt: skip
        else:
            mux(concat, work.audio, work.unsigned, metadata=metadata, audio_encoded=True, fmt=fmt,
                while_running=running)  # fmt: skip
            pause_point("sign")
            work.guard()
            remove_stale_temporaries(job.output)
            sign_video(work.unsigned, job.output, record.c2pa_manifest(fmt.mime), record.signer,
                       before_rename=lambda: pause_point("sign:written"))  # fmt: skip
            work.unsigned.unlink()
        digest = sha256_file(job.output)
        sidecar = write_sidecar(job.output, record.sidecar(job.output.name, digest))
    return digest, sha256_file(sidecar)
