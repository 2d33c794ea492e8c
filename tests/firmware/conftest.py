"""Release repositories served over real HTTP, bundles built once per session, slots bootstrapped once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner

from firmware.agent.agent import UpdateAgent
from firmware.agent.config import AgentConfig
from firmware.release.build import build_bundle, build_wheel, settings_schema
from firmware.release.repository import ReleaseRepository, init_release_repository
from firmware.version import Version
from testbed.ports import free_port

HERE = Path(__file__).resolve().parent
PROBE = HERE / "health_probe.py"


@pytest.fixture(scope="session")
def release_inputs() -> tuple[list[Path], bytes]:
    """The project wheel and settings schema, built once (pip wheel takes a few seconds)."""
    return [build_wheel()], settings_schema()


@pytest.fixture(scope="session")
def bundle(release_inputs, tmp_path_factory) -> Callable[..., Path]:
    """``bundle("1.1.0", min_from=None)``: a release bundle file, built once per version."""
    out = tmp_path_factory.mktemp("bundles")
    cache: dict[tuple[str, str | None], Path] = {}
    wheels, schema = release_inputs

    def get(version: str, min_from: str | None = None) -> Path:
        if (version, min_from) not in cache:
            path, _ = build_bundle(Version(version), out / f"{version}-{min_from}",
                                   min_from=Version(min_from) if min_from else None, wheels=wheels, schema=schema)
            cache[(version, min_from)] = path
        return cache[(version, min_from)]

    return get


@dataclass
class Release:
    repo: ReleaseRepository
    signers: list[CryptoSigner]
    url: str
    dir: Path

    def publish(self, path: Path, version: str, min_from: str | None = None) -> None:
        self.repo.publish(path, Version(version), Version(min_from) if min_from else None, self.signers[:2])


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Release]:
    """A fresh release repository (2-of-3 release keys) served by a real ``python -m http.server``."""
    repo_dir = tmp_path / "release-repo"
    repo = init_release_repository(repo_dir, tmp_path / "offline-root", tmp_path / "release-keys")
    signers = [ReleaseRepository.load_signer(tmp_path / "release-keys" / f"release-{i}.pem") for i in (1, 2, 3)]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(repo_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/metadata/root.json", timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield Release(repo, signers, url, repo_dir)
    server.kill()
    server.wait()


def agent_config(state_dir: Path, release: Release | None, fail_list: Path, **overrides: object) -> AgentConfig:
    """Slots over this interpreter; the health check is the probe script; no service restart."""
    fields: dict[str, object] = dict(
        state_dir=state_dir, repository_url=release.url if release else "http://127.0.0.1:9/",
        trusted_root=(release.dir / "metadata" / "1.root.json") if release else state_dir / "none.json",
        runtime_python=Path(sys.executable), extra_site_packages=[Path(sysconfig.get_paths()["purelib"])],
        health_commands=[["{python}", str(PROBE), "{version}", "{slot}", str(fail_list)]], restart_command=[],
        max_boot_attempts=2, confirm_timeout_s=600)
    fields.update(overrides)
    return AgentConfig.model_validate(fields)


@pytest.fixture(scope="session")
def bootstrapped(bundle, tmp_path_factory) -> Path:
    """A state dir with 1.0.0 installed in slot a (install-local), copied per test."""
    state = tmp_path_factory.mktemp("bootstrap") / "state"
    result = UpdateAgent(agent_config(state, None, state / "no-fail")).install_local(bundle("1.0.0"))
    assert result.outcome == "installed", result.message
    return state


@pytest.fixture
def desk(bootstrapped: Path, tmp_path: Path) -> Path:
    """This test's own copy of the bootstrapped desk state (venvs are relocatable: no pip inside)."""
    state = tmp_path / "desk"
    shutil.copytree(bootstrapped, state, symlinks=True)
    return state
