"""What is wrong with a journey, and where: `file:line:column: message`.

The loader collects every problem of a file before giving up, so a marketer
fixes a file in one pass; the compiler-style text lets editors jump to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One mistake in a journey or template file; line and column are 1-based (0: the
    file or folder as a whole).

    An error stops a deploy. A warning is something that is likely a mistake but may
    be right (an event name no spec, tracking plan or store knows): `journeys
    validate` prints it and still passes, unless `--strict` (what CI should use).
    """

    file: str
    line: int
    column: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        if self.line == 0:  # a folder, or a file as a whole: no line to point at
            return f"{self.file}: {label}{self.message}"
        return f"{self.file}:{self.line}:{self.column}: {label}{self.message}"

    @classmethod
    def whole(cls, path: Path, message: str, severity: Severity = "error") -> Problem:
        """A problem of a folder or file as a whole: printed `templates/welcome/russian/:`,
        with no line (a folder has none, and `:1:1` would send an editor nowhere)."""
        name = f"{path}/" if path.is_dir() else str(path)
        return cls(name, 0, 0, message, severity)

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def as_warning(self) -> Problem:
        return Problem(self.file, self.line, self.column, self.message, "warning")


class JourneyError(ValueError):
    """A journey that cannot be loaded; `problems` says every reason, with locations."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def sorted_problems(problems: list[Problem], file: str) -> list[Problem]:
    """Unique problems, by position; the journey file's own before its templates'."""
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda p: (p.file != file, p.file, p.line, p.column))
