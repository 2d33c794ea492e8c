"""The update agent against a real release repository over HTTP, with real slots, venvs and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets

from firmware.agent.agent import UpdateAgent
from firmware.agent.slots import slot_version
from firmware.errors import ReleaseError
from firmware.release.repository import ReleaseRepository, init_release_repository
from firmware.version import Version
from tests.firmware.conftest import PROBE, Release, agent_config

ROOT = Path(__file__).resolve().parents[2]


def _current(state: Path) -> tuple[str, Version | None]:
    """Which slot ``current`` points at and the version of that slot if it is complete."""
    slot = os.readlink(state / "current").split("/")[-1]
    return slot, slot_version(state, slot)


def _boots(state: Path, version: str) -> None:
    """The slot ``current`` points at really runs: its own appliance wheel imports and it is the version."""
    slot = state / "current"
    done = subprocess.run([str(slot / "venv" / "bin" / "python"), str(PROBE), version, str(slot), "/nonexistent"],
                          cwd=slot, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _current(state)[1] == Version(version)


def test_good_update_switches_to_the_other_slot_and_confirms(release: Release, bundle, desk: Path, tmp_path):
    release.publish(bundle("1.1.0"), "1.1.0")
    agent = UpdateAgent(agent_config(desk, release, tmp_path / "fail"))
    result = agent.check()
    assert result.outcome == "installed", result.message
    assert _current(desk) == ("b", Version("1.1.0"))
    _boots(desk, "1.1.0")
    state = agent.status()
    assert (state.pending_confirm, state.previous_slot, state.previous_version) == (True, "a", "1.0.0")
    assert agent.check().outcome == "pending"  # nothing new installed over an unconfirmed version
    assert agent.boot().outcome == "pending"
    assert agent.confirm().outcome == "confirmed"
    assert agent.status().pending_confirm is False
    assert agent.check().outcome == "up_to_date"


def test_tampered_bundle_is_refused_and_the_slot_is_untouched(release: Release, bundle, desk: Path, tmp_path):
    release.publish(bundle("1.1.0"), "1.1.0")
    served = release.repo.target_path("custody-rfr-appliance-1.1.0.tar.gz")
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length: only the hash can tell
    served.write_bytes(bytes(data))
    result = UpdateAgent(agent_config(desk, release, tmp_path / "fail")).check()
    assert (result.outcome, result.reason) == ("refused", "altered_download")
    assert _current(desk) == ("a", Version("1.0.0"))
    assert not (desk / "slots" / "b" / "slot.json").exists()
    _boots(desk, "1.0.0")


def test_server_offering_only_an_older_version_is_refused(release: Release, bundle, desk: Path, tmp_path):
    release.publish(bundle("1.1.0"), "1.1.0")
    agent = UpdateAgent(agent_config(desk, release, tmp_path / "fail"))
    assert agent.check().outcome == "installed"
    agent.confirm()
    release.repo.withdraw(Version("1.1.0"), release.signers[:2])
    release.publish(bundle("1.0.5"), "1.0.5")  # validly signed, but older than what the desk runs
    result = agent.check()
    assert (result.outcome, result.reason) == ("refused", "rollback")
    assert "never goes back" in result.message
    assert _current(desk) == ("b", Version("1.1.0"))


def test_failing_health_check_does_not_switch_and_is_not_retried(release: Release, bundle, desk: Path, tmp_path):
    (tmp_path / "fail").write_text("1.1.0\n")
    release.publish(bundle("1.1.0"), "1.1.0")
    agent = UpdateAgent(agent_config(desk, release, tmp_path / "fail"))
    result = agent.check()
    assert result.outcome == "unhealthy"
    assert "probe search failed" in result.message
    assert _current(desk) == ("a", Version("1.0.0"))
    again = agent.check()
    assert (again.outcome, again.reason) == ("refused", "failed_before")
    release.publish(bundle("1.2.0"), "1.2.0")  # a fixed release goes ahead
    assert agent.check().outcome == "installed"
    assert _current(desk) == ("b", Version("1.2.0"))


def test_unconfirmed_first_boot_rolls_back_by_itself(release: Release, bundle, desk: Path, tmp_path):
    release.publish(bundle("1.1.0"), "1.1.0")
    agent = UpdateAgent(agent_config(desk, release, tmp_path / "fail", max_boot_attempts=2))
    assert agent.check().outcome == "installed"
    assert agent.boot().outcome == "pending"
    assert agent.boot().outcome == "pending"
    result = agent.boot()  # third start without a confirm: the new version is not coming up
    assert result.outcome == "rolled_back"
    assert _current(desk) == ("a", Version("1.0.0"))
    _boots(desk, "1.0.0")
    state = agent.status()
    assert (state.version, state.pending_confirm, state.failed_versions) == ("1.0.0", False, ("1.1.0",))
    assert agent.check().reason == "failed_before"  # the failed version is not installed again


def test_first_boot_that_never_confirms_rolls_back_after_the_deadline(release: Release, bundle, desk: Path,
                                                                       tmp_path):
    release.publish(bundle("1.1.0"), "1.1.0")
    config = agent_config(desk, release, tmp_path / "fail", confirm_timeout_s=60)
    assert UpdateAgent(config).check().outcome == "installed"
    later = UpdateAgent(config, clock=lambda: __import__("time").time() + 61)
    assert later.check().outcome == "rolled_back"
    assert _current(desk) == ("a", Version("1.0.0"))


def test_release_signed_with_library_keys_is_refused(release: Release, bundle, desk: Path, tmp_path):
    """Targets metadata signed by another repository's (the library signers') key is not a release."""
    init_release_repository(tmp_path / "library-repo", tmp_path / "lib-root", tmp_path / "lib-keys")
    library_key = ReleaseRepository.load_signer(tmp_path / "lib-keys" / "release-1.pem")
    with pytest.raises(ReleaseError, match="not release keys"):
        release.repo.publish(bundle("1.1.0"), Version("1.1.0"), None, [library_key, release.signers[0]])
    # A hostile publisher bypasses the check: sign the release list with the library key anyway.
    release.publish(bundle("1.1.0"), "1.1.0")
    meta = release.dir / "metadata"
    snapshot = json.loads((meta / "timestamp.json").read_text())["signed"]["meta"]["snapshot.json"]["version"]
    targets_version = json.loads((meta / f"{snapshot}.snapshot.json").read_text())["signed"]["meta"][
        "targets.json"]["version"]
    path = meta / f"{targets_version}.targets.json"
    md = Metadata[Targets].from_bytes(path.read_bytes())
    md.signatures.clear()
    md.sign(library_key)
    md.sign(ReleaseRepository.load_signer(tmp_path / "lib-keys" / "release-2.pem"), append=True)
    path.write_bytes(md.to_bytes())
    result = UpdateAgent(agent_config(desk, release, tmp_path / "fail")).check()
    assert result.outcome == "refused"
    assert result.reason in {"bad_signature", "altered_download"}
    assert _current(desk) == ("a", Version("1.0.0"))


_CHILD = """
import json, sys, time
from pathlib import Path
from firmware.agent.agent import UpdateAgent
from firmware.agent.config import AgentConfig

config, stop_at, command = AgentConfig.model_validate_json(Path(sys.argv[1]).read_text()), sys.argv[2], sys.argv[3]

def hook(name):
    print(name, flush=True)
    if name == stop_at:
        time.sleep(600)

result = getattr(UpdateAgent(config, on_stage=hook), command)()
print("done", result.outcome, flush=True)
"""


def _kill_at(config_file: Path, stage: str, command: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(config_file), stage, command], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line.strip())
        if line.strip() == stage:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.stdout.close()
    child.wait()
    assert seen[-1] == stage, f"never reached {stage}: {seen}"


@pytest.mark.parametrize("stage", ["downloaded", "cleared", "extracted", "installed", "complete", "healthy",
                                   "committed", "switched"])
def test_kill_9_at_each_install_stage_leaves_a_bootable_slot(release: Release, bundle, desk: Path, tmp_path,
                                                             stage: str):
    release.publish(bundle("1.1.0"), "1.1.0")
    config = agent_config(desk, release, tmp_path / "fail")
    (tmp_path / "agent.json").write_text(config.model_dump_json())
    _kill_at(tmp_path / "agent.json", stage, "check")
    _, version = _current(desk)
    assert version in (Version("1.0.0"), Version("1.1.0"))
    _boots(desk, str(version))
    # The next run finishes the job: 1.1.0 active, pending its first boot.
    result = UpdateAgent(config).check()
    assert result.outcome in {"installed", "pending"}, result.message
    _boots(desk, "1.1.0")


@pytest.mark.parametrize("stage", ["rollback-committed", "rolled-back"])
def test_kill_9_during_automatic_rollback_leaves_a_bootable_slot(release: Release, bundle, desk: Path, tmp_path,
                                                                 stage: str):
    release.publish(bundle("1.1.0"), "1.1.0")
    config = agent_config(desk, release, tmp_path / "fail", max_boot_attempts=1)
    agent = UpdateAgent(config)
    assert agent.check().outcome == "installed"
    agent.boot()
    (tmp_path / "agent.json").write_text(config.model_dump_json())
    _kill_at(tmp_path / "agent.json", stage, "boot")
    _boots(desk, str(_current(desk)[1]))
    assert agent.boot().outcome == "confirmed"  # recovery finishes the rollback
    _boots(desk, "1.0.0")
