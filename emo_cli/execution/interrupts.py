"""Stopping on a signal: Ctrl-C (SIGINT) and SIGTERM (what Slurm, systemd and Kubernetes send
to the whole process group) both stop a render the same way, as KeyboardInterrupt, and the
command exits with 128 + the signal's number, the shell's convention: 130 for Ctrl-C, 143 for
SIGTERM, wherever the signal arrives (planning, rendering, publishing).
"""

from __future__ import annotations

import signal
import threading

_received: int | None = None


def stop(signum: int, frame: object) -> None:
    """A signal handler: remember the signal, then stop like Ctrl-C."""
    global _received
    _received = signum
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """From now on SIGTERM stops this process like Ctrl-C (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def exit_code() -> int:
    """128 + the signal that stopped us: 143 after SIGTERM, 130 after Ctrl-C (or no signal)."""
    return 128 + (_received if _received is not None else signal.SIGINT)
