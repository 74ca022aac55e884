"""`testinline`: an executor installed through the real `emo_cli.executors` entry point (see the
`emo_test_backends-0.1.dist-info` beside this file), as a third-party package would add one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from emo_cli.execution.executors import InlineExecutor


@dataclass(frozen=True)
class TestInlineExecutor(InlineExecutor):
    """The inline executor under its own name and place."""

    name: ClassVar[str] = "testinline"

    def where(self) -> str:
        return "test-plugin"
