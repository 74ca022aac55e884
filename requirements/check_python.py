"""Refuse an unsupported Python before any install step, with a message that says what to do.

`make demo`, `make test` and requirements/lock.sh run it first: without it, an unsupported
Python fails deep inside pip ("no matching distribution for mediapipe==0.10.21"). The range is
read from pyproject.toml's requires-python, the one place it is written. Standard library only,
and syntax that old interpreters still parse, so that they reach the message.
"""

import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_CLAUSE = re.compile(r"^\s*(>=|<=|<|>)\s*(\d+(?:\.\d+)*)\s*$")


def requires_python(pyproject=PYPROJECT):
    """The requires-python specifier of pyproject.toml, e.g. '>=3.11,<3.13'."""
    match = re.search(r'^requires-python\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit("{}: no requires-python in [project]".format(pyproject))
    return match.group(1)


def _as_tuple(text):
    return tuple(int(part) for part in text.split("."))


def satisfies(version, specifier):
    """Whether a (major, minor, micro) version meets every clause of a specifier such as
    '>=3.11,<3.13'. Ordered comparisons of plain releases only: all this project needs."""
    for clause in specifier.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError("unsupported requires-python clause {!r}".format(clause))
        operator, bound = match.group(1), _as_tuple(match.group(2))
        bound = bound + (0,) * (len(version) - len(bound))
        ok = {
            ">=": version >= bound,
            "<=": version <= bound,
            ">": version > bound,
            "<": version < bound,
        }[operator]
        if not ok:
            return False
    return True


def problem(version, executable, specifier):
    """The message for an unsupported interpreter, or None when it is supported."""
    if satisfies(tuple(version[:3]), specifier):
        return None
    found = ".".join(str(part) for part in version[:3])
    return (
        "emo-cli supports Python {spec} (pyproject.toml requires-python), but {exe} is Python "
        "{found}.\nInstall a supported Python and point the set-up at it, e.g. "
        "`make demo PYTHON=python3.11` (then `make clean` if a .venv was made with the wrong one)."
    ).format(spec=specifier, exe=executable, found=found)


def main():
    message = problem(sys.version_info, sys.executable, requires_python())
    if message is not None:
        sys.stderr.write(message + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
