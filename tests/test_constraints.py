"""`constraints.txt`: the versions the README's install commands take.

pyproject.toml states the compatible ranges; the constraints file pins one version of
every package they pull in, so a fresh clone installs what CI tested, and a new
release upstream (a CLDR update in Babel, say) cannot turn the suite red without a
commit here. These tests catch a dependency added or raised in pyproject.toml without
refreshing the file (docs/operations.md says how).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "journeys-orchestrator"
# The extras the README's commands install: `.[test]`, which pulls in postgres and providers.
README_EXTRAS = ("test",)


def pins() -> dict[str, str]:
    """Package name -> pinned version, from constraints.txt (markers kept aside)."""
    found: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)(\s*;.*)?", line)
        assert match, f"constraints.txt: {line!r} is not `name==version [; marker]`"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject.toml's requirements for the base install plus `extras`, self-references
    (`journeys-orchestrator[sendgrid,...]`) followed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    found = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    locked = pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every_extra = tuple(project["optional-dependencies"])
    problems = []
    for requirement in declared(every_extra):
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is not pinned")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{requirement} is pinned to {locked[name]}, outside its range")
    assert not problems, (
        "constraints.txt is out of date with pyproject.toml (refresh it as "
        "docs/operations.md says):\n" + "\n".join(problems)
    )


def test_every_package_the_readme_install_pulls_in_is_pinned() -> None:
    """The whole tree under `.[test]`, as installed here, read from the packages' metadata."""
    locked = pins()
    unpinned: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str, str]] = [
        (PROJECT, extra, "README") for extra in ("", *README_EXTRAS)
    ]
    while todo:
        name, extra, parent = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        if name != PROJECT and name not in locked:
            unpinned[name] = parent
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            environment = {**default_environment(), "extra": extra}
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            child = canonicalize_name(requirement.name)
            todo.append((child, "", name))
            todo.extend((child, e, name) for e in requirement.extras)
    assert (PROJECT, "test") in seen
    assert not unpinned, "installed but not pinned in constraints.txt: " + ", ".join(
        f"{name} (required by {parent})" for name, parent in sorted(unpinned.items())
    )


def test_the_readme_and_ci_install_from_the_constraints_file() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    installs = re.findall(r"\.venv/bin/pip install [^&\n]*", readme + ci)
    assert len(installs) >= 3, installs
    for command in installs:
        assert " -c constraints.txt " in command, command
