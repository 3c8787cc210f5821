"""What is wrong with a journey, and where: `file:line:column: message`.

The loader collects every problem of a file before giving up, so a marketer
fixes a file in one pass; the compiler-style text lets editors jump to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One mistake in a journey or template file; line and column are 1-based."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class JourneyError(ValueError):
    """A journey that cannot be loaded; `problems` says every reason, with locations."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def sorted_problems(problems: list[Problem], file: str) -> list[Problem]:
    """Unique problems, by position; the journey file's own before its templates'."""
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda p: (p.file != file, p.file, p.line, p.column))
