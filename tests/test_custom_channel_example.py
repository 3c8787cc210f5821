"""`examples/custom_channel` installs as its own package and the registry finds it.

The example is installed with pip into a temporary directory (never into the
project's environment), and a fresh interpreter with only that directory added
resolves `adapter_class("messagebird")` and sends one SMS to a loopback fake.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from fakes.server import FakeProvider, Reply, Request

from channels import ChannelConfigError
from channels.registry import adapter_class

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_channel"
KEY = "live_0123456789abcdef"


@dataclass
class Installed:
    source: Path  # a copy of the example (pip builds in-tree: keep the repository clean)
    site: Path  # what `pip install --target` produced
    how: str


def can_build_wheels() -> bool:
    """setuptools builds wheels by itself from 70.1; before that it needs `wheel`."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in version("setuptools").split("."))
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("custom_channel")
    source, site = root / "journeys-messagebird", root / "site"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    if can_build_wheels():
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
        command += ["--no-index", "--quiet", "--target", str(site), str(source)]
        how = "pip install --target"
    else:
        # No wheel builder offline: let setuptools write the same metadata (entry points
        # included) from the same pyproject.toml, and put the package beside it.
        command = [sys.executable, "-c", "from setuptools import setup; setup()"]
        command += ["--quiet", "egg_info", "--egg-base", str(site)]
        site.mkdir()
        shutil.copytree(source / "journeys_messagebird", site / "journeys_messagebird")
        how = "setuptools egg_info"
    done = subprocess.run(command, cwd=source, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    metadata = [*site.glob("journeys_messagebird*.dist-info"), *site.glob("*.egg-info")]
    assert metadata, sorted(p.name for p in site.iterdir())
    yield Installed(source, site, how)


class FakeMessageBird(FakeProvider):
    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/messages":
            return Reply(404, {"errors": [{"code": 20, "description": "not found"}]})
        if request.headers.get("authorization") != f"AccessKey {KEY}":
            return Reply(401, {"errors": [{"code": 2, "description": "Request not allowed"}]})
        return Reply(201, {"id": "e8077d803532c0b5937c639b60216938", "reference": "m-1"})


def run(code: str, installed: Installed, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env, "PYTHONPATH": str(installed.site)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=installed.site.parent,  # not the repository: nothing importable by accident
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


SEND_ONE = """
import json, sys
from channels import OutgoingMessage
from channels.registry import adapter_class
cls = adapter_class("messagebird")
adapter = cls.from_settings(None)
receipt = adapter.send(OutgoingMessage(
    message_id="m-1", channel="sms", to="+31612345678",
    content={"body": "Ann, your red shoes are waiting"}, options={"from": "ShoeShop"}))
print(json.dumps({"serves": cls.serves, "module": sys.modules[cls.__module__].__file__,
                  "receipt": receipt.provider_message_id}))
"""


def test_the_installed_example_is_found_and_sends(installed: Installed) -> None:
    # The project's own environment does not have it: only the install below provides it.
    with pytest.raises(ChannelConfigError, match="messagebird"):
        adapter_class("messagebird")
    with FakeMessageBird() as fake:
        done = run(
            SEND_ONE,
            installed,
            {
                "MESSAGEBIRD_ACCESS_KEY": KEY,
                "MESSAGEBIRD_ORIGINATOR": "Shoes",
                "MESSAGEBIRD_BASE_URL": fake.url,
            },
        )
        assert done.returncode == 0, f"{installed.how}: {done.stderr}"
        result = json.loads(done.stdout)
        assert result["serves"] == ["sms"]
        assert Path(result["module"]).is_relative_to(installed.site)
        assert result["receipt"] == "e8077d803532c0b5937c639b60216938"
        (request,) = fake.requests
    assert request.path == "/messages"
    assert request.headers["authorization"] == f"AccessKey {KEY}"
    assert request.json() == {
        "originator": "ShoeShop",
        "recipients": ["31612345678"],
        "body": "Ann, your red shoes are waiting",
        "reference": "m-1",
    }


def test_a_missing_setting_stops_the_worker_naming_it(installed: Installed) -> None:
    code = "import channels.registry as r; r.adapter_class('messagebird').from_settings(None)"
    done = run(code, installed, {"MESSAGEBIRD_ACCESS_KEY": "", "MESSAGEBIRD_ORIGINATOR": "Shoes"})
    assert done.returncode != 0
    assert "ChannelConfigError" in done.stderr and "MESSAGEBIRD_ACCESS_KEY" in done.stderr


def test_the_example_ships_passing_tests(installed: Installed) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=installed.source,
        env={**os.environ, "PYTHONPATH": str(installed.site)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
