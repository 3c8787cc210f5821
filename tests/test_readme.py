"""The README as a user reads it: every shell command in it runs, and prints what it shows.

In a ```bash block, `# ` lines right under a command are what it prints (`…` stands
for any text, timestamps are compared as timestamps); `#` lines before a command are
prose. A command shown printing nothing must print nothing, and only one whose output
reports a problem (`error: …`, `N problem(s) found`) may exit non-zero.

Commands run in a bash session, one after the other as pasted, in a copy of the
project (journeys/, templates/, examples/tour/) with `.venv/bin/journeys` the command
under test. The tour runs against a real `journeys dev` (tests/devstack.py) on free
ports: `localhost:8000` in a command is pointed at it, and its ports are written back
as 8000 and 8233 in what it prints. Listings (`journeys runs`, a curl GET) are repeated
until they match, as a reader would after a moment; anything that writes runs once.
The install blocks are not run (CI runs the test command, see
test_ci_runs_the_readme_test_command).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from devstack import DevStack, subprocess_env

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOUR = "A five-minute tour"

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")
FAILURE = re.compile(r"^error: |\d+ problem\(s\) found")
# Listings a reader may run again; everything else changes something and runs once.
READ_ONLY = re.compile(
    r"^(\.venv/bin/journeys (runs|keys list|stats|explain)\b|curl (?!.*(\s-d\s|--data|-X)))"
)


# --- reading the README --------------------------------------------------------------


@dataclass
class Block:
    lang: str
    text: str
    line: int  # of the opening fence
    section: str


@dataclass
class Command:
    text: str
    shown: list[str]  # what the README says it prints
    line: int

    @property
    def reports_failure(self) -> bool:
        return any(FAILURE.search(line) for line in self.shown)


def blocks(text: str | None = None) -> list[Block]:
    found, section = [], ""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:].strip()
        if lines[i].startswith("```"):
            start, lang = i, lines[i][3:].strip()
            i += 1
            body = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            found.append(Block(lang, "\n".join(body), start + 1, section))
        i += 1
    return found


def complete(source: str) -> bool:
    """A command is complete once its quotes close and its last line does not continue."""
    if source.endswith("\\"):
        return False
    try:
        shlex.split(source)
    except ValueError:
        return False
    return True


def commands(block: Block) -> list[Command]:
    lines, found, i = block.text.splitlines(), [], 0
    while i < len(lines):
        if not lines[i].strip() or lines[i].startswith("#"):
            i += 1  # prose between commands
            continue
        start, source = i, [lines[i]]
        while not complete("\n".join(source)):
            i += 1
            assert i < len(lines), f"README.md:{block.line + start + 1}: unterminated command"
            source.append(lines[i])
        i += 1
        shown = []
        while i < len(lines) and lines[i].startswith("#"):
            shown.append(lines[i][2:] if lines[i].startswith("# ") else lines[i][1:])
            i += 1
        found.append(Command("\n".join(source), shown, block.line + start + 1))
    return found


def is_install(block: Block) -> bool:
    return "pip install" in block.text


# --- comparing what is shown with what is printed ------------------------------------


def normalized(text: str) -> list[str]:
    lines = [TIMESTAMP.sub("<timestamp>", line).rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def matches(shown: list[str], printed: str) -> bool:
    expected, actual = normalized("\n".join(shown)), normalized(printed)
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual, strict=True):
        pattern = ".*?".join(re.escape(part) for part in want.split("…"))
        if not re.fullmatch(pattern, got):
            return False
    return True


# --- running it ----------------------------------------------------------------------


class Shell:
    """One bash session, as a terminal the reader pastes into (stderr shown with stdout)."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, source: str, timeout: float = 120) -> tuple[int, str]:
        marker = f"__readme_{uuid.uuid4().hex}__"
        assert self.process.stdin is not None
        self.process.stdin.write(f"{source}\nprintf '\\n{marker}%s\\n' \"$?\"\n")
        self.process.stdin.flush()
        printed: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"still running after {timeout:.0f}s: {source}\n{''.join(printed)}"
                ) from None
            if line is None:
                raise AssertionError(f"the shell ended during: {source}\n{''.join(printed)}")
            if line.startswith(marker):
                return int(line[len(marker) :]), "".join(printed)
            printed.append(line)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)


@dataclass
class Project:
    """A copy of what the README's commands touch, with `.venv/bin/journeys`."""

    root: Path
    shells: list[Shell] = field(default_factory=list)

    def shell(self, **env: str) -> Shell:
        # In a terminal curl shows no progress meter; here its output is a pipe.
        (self.root / ".curlrc").write_text("silent\nshow-error\n")
        shell = Shell(self.root, subprocess_env(CURL_HOME=str(self.root), **env))
        self.shells.append(shell)
        return shell


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "shop"
    for folder in ("journeys", "templates", "examples/tour"):
        shutil.copytree(ROOT / folder, root / folder)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    installed = Path(sys.executable).with_name("journeys")
    if installed.is_file():  # the console script `pip install -e .` made
        (bin_dir / "journeys").symlink_to(installed)
    else:
        shim = bin_dir / "journeys"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m orchestrator.cli "$@"\n')
        shim.chmod(0o755)
    made = Project(root)
    yield made
    for shell in made.shells:
        shell.close()


def run_and_compare(shell: Shell, command: Command, source: str, patience: float = 0) -> str:
    """Run `source` (the command, maybe re-pointed); a listing is repeated for `patience` s."""
    deadline = time.monotonic() + patience
    while True:
        status, printed = shell.run(source)
        ok = matches(command.shown, printed) and (status != 0) == command.reports_failure
        if ok or time.monotonic() > deadline or not READ_ONLY.match(command.text):
            break
        time.sleep(0.5)
    shown = "\n".join(command.shown) or "(nothing)"
    assert ok, (
        f"README.md:{command.line}: `{command.text}`\n--- the README shows:\n{shown}\n"
        f"--- it printed (exit status {status}):\n{printed}"
    )
    return printed


# --- the tests -----------------------------------------------------------------------


def test_the_readme_is_read_as_intended() -> None:
    """The reader above finds the blocks this file checks (a guard against a silent no-op)."""
    found = blocks()
    bash = [b for b in found if b.lang == "bash"]
    assert sum(is_install(b) for b in bash) >= 2
    tour = [c for b in bash if b.section == TOUR for c in commands(b)]
    assert len(tour) >= 6 and all(c.shown for c in tour if not c.text.startswith("KEY="))
    example = Block("bash", 'a "b\nc" \\\n  d\n# out\n#\n# more\n\n# prose\ne', 1, "")
    assert [(c.text, c.shown) for c in commands(example)] == [
        ('a "b\nc" \\\n  d', ["out", "", "more"]),
        ("e", []),
    ]
    assert matches(["x: dev_…", "at 2026-11-22 17:21:43"], "x: dev_abc\nat 2024-01-02 03:04:05\n")
    assert not matches(["x: dev_…"], "x: prod_abc")
    assert not matches(["one"], "one\ntwo")


def test_ci_runs_the_readme_test_command() -> None:
    install = next(b for b in blocks() if b.lang == "bash" and is_install(b))
    test_command = next(c.text for c in commands(install) if "pytest" in c.text)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_commands_outside_the_tour_print_what_the_readme_shows(project: Project) -> None:
    # The default quiet hours, as a reader has them: `journeys simulate` runs on its own
    # clock (the wall clock decides nothing), and its invariants check them.
    shell = project.shell(
        JOURNEYS_QUIET_HOURS_PUSH="21:00-08:00", JOURNEYS_QUIET_HOURS_SMS="21:00-08:00"
    )
    ran = 0
    for block in blocks():
        if block.lang != "bash" or block.section == TOUR or is_install(block):
            continue
        for command in commands(block):
            run_and_compare(shell, command, command.text)
            ran += 1
    assert ran >= 2  # journeys validate and journeys preview


def test_the_journey_example_is_valid(project: Project) -> None:
    [journey] = [b for b in blocks() if b.lang == "yaml" and b.section == "Writing journeys"]
    (project.root / "readme_journey.yaml").write_text(journey.text + "\n")
    status, printed = project.shell().run(".venv/bin/journeys validate readme_journey.yaml")
    assert (status, printed.strip()) == (0, "1 journey(s) valid"), printed


def test_the_template_shown_is_the_shipped_file() -> None:
    [jinja] = [b for b in blocks() if b.lang == "jinja"]
    first, _, body = jinja.text.partition("\n")
    path = re.fullmatch(r"\{# (templates/\S+) #\}", first)
    assert path, first
    assert body == (ROOT / path.group(1)).read_text(encoding="utf-8").rstrip("\n")


def test_the_message_folder_shown_is_the_shipped_one() -> None:
    [listing] = [b for b in blocks() if b.text.startswith("templates/cart_reminder/")]
    folder = ROOT / "templates" / "cart_reminder"
    names = {
        word.rstrip("/")
        for line in listing.text.splitlines()[1:]
        for word in line.split("#")[0].split()
    }
    assert names == {p.name for p in folder.iterdir()}


def test_the_tours_cart_reaches_the_reminder_with_its_link(project: Project) -> None:
    """The tour's Product Added carries the cart link as the templates read it: the
    reminder sends Ann back to her cart, not to the shop's home page (it sent `url`,
    the product's page in Segment's spec, where the templates read `cart_url`)."""
    bodies = {}
    for block in blocks():
        if block.section != TOUR or block.lang != "bash":
            continue
        for command in commands(block):
            words = shlex.split(command.text)
            if words[0] == "curl" and "-d" in words:
                call = json.loads(words[words.index("-d") + 1])
                bodies[call.get("event") or words[words.index("-d") - 1].rsplit("/", 1)[-1]] = call
    identify, added = bodies["identify"], bodies["Product Added"]
    (project.root / "ann.json").write_text(json.dumps(identify))
    (project.root / "added.json").write_text(json.dumps(added))
    cart_link = added["properties"].get("cart_url")
    assert cart_link, added

    status, printed = project.shell().run(
        ".venv/bin/journeys preview cart_reminder --contact ann.json --event added.json "
        "--channel email --channel push"
    )

    assert status == 0, printed
    assert f"Return to your cart: {cart_link}" in printed, printed
    assert f"Link: {cart_link}" in printed, printed


@pytest.mark.slow
def test_the_tour_against_journeys_dev(project: Project) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the tour's commands use curl, which is not installed")
    stack = DevStack(project.root)
    try:
        stack.start()
        ports = {f":{stack.api_port}": ":8000", f":{stack.ui_port}": ":8233"}
        tour = [b for b in blocks() if b.section == TOUR]
        announced = next(b for b in tour if b.lang == "" and "write key:" in b.text)
        printed = stack.output()
        for real, shown in ports.items():
            printed = printed.replace(real, shown)
        assert matches(announced.text.splitlines(), printed), (
            f"README.md:{announced.line}: `journeys dev` printed\n{printed}"
        )

        shell = project.shell()
        for block in tour:
            if block.lang != "bash":
                continue
            for command in commands(block):
                source = command.text.replace("localhost:8000", f"localhost:{stack.api_port}")
                run_and_compare(shell, command, source, patience=60)

        # What the tour says the console shows after the order (sent from the email queue).
        deadline = time.monotonic() + 60
        while not re.search(r"\+59 points[\s\S]*THANKS-[A-Z0-9]{4,}", stack.output()):
            assert time.monotonic() < deadline, f"no thank-you email\n{stack.report()}"
            time.sleep(0.5)
    finally:
        stack.close()
