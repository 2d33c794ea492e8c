"""The update agent's settings file (TOML), strict: a typo is an error, never a silently ignored key."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field, ValidationError

from core.errors import SettingsError
from core.settings import StrictModel

# The image's read-only model cache (artifacts, extracted files, converted IR), seeded by build-rootfs.sh.
IMAGE_CACHE_DIR = "/usr/share/custody-rfr/cache"
APPLIANCE_UNIT = "custody-rfr-appliance.service"
SELFTEST_UNIT = "custody-rfr-selftest.service"
# The same credentials as custody-rfr-appliance.service (tests/firmware/test_units.py keeps them equal).
APPLIANCE_CREDENTIALS = ("library.key:/etc/credstore.encrypted/library.key",
                         "device.key:/etc/credstore.encrypted/device.key",
                         "web-secret:/etc/credstore.encrypted/web-secret")
# The same environment as custody-rfr-appliance.service: the image's model cache, and huge pages for the index.
APPLIANCE_ENVIRONMENT = (f"RFR_CACHE_DIR={IMAGE_CACHE_DIR}", "GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
# The selftest runs as the appliance would: a transient unit started by PID 1 (the update service is root and
# may start units) with the appliance's user, TPM-decrypted credentials and model cache. Its credentials land in
# /run/credentials/custody-rfr-selftest.service/, bound over the appliance's directory, where appliance.toml's
# key paths point. --pipe passes the output through, --wait returns its exit status, --collect removes it after.
DEFAULT_HEALTH = [[
    "systemd-run", "--wait", "--pipe", "--quiet", "--collect", f"--unit={SELFTEST_UNIT}",
    "-p", "User=custody-rfr", "-p", "Group=custody-rfr",
    *[arg for cred in APPLIANCE_CREDENTIALS for arg in ("-p", f"LoadCredentialEncrypted={cred}")],
    "-p", f"BindReadOnlyPaths=/run/credentials/{SELFTEST_UNIT}:/run/credentials/{APPLIANCE_UNIT}",
    *[arg for env in APPLIANCE_ENVIRONMENT for arg in ("-p", f"Environment={env}")],
    "--", "{python}", "-m", "appliance", "selftest", "--config", "/etc/custody-rfr/appliance.toml"]]


class AgentConfig(StrictModel):
    """Where the slots live, where releases come from, and how a new slot proves itself."""

    state_dir: Path = Field(Path("/var/lib/custody-rfr/firmware"),
                            description="Slots a/ and b/, the `current` link, state.json, TUF metadata cache.")
    repository_url: str = Field(description="Base URL of the release repository (…/metadata/ and …/targets/).")
    trusted_root: Path = Field(description="The release repository's 1.root.json installed at provisioning.")
    runtime_python: Path = Field(Path("/usr/bin/python3"),
                                 description="Interpreter each slot's venv is made from (--system-site-packages).")
    extra_site_packages: list[Path] = Field(default_factory=list,
                                            description="Folders with the pinned dependencies, added to each slot.")
    health_commands: list[list[str]] = Field(
        default_factory=lambda: [list(c) for c in DEFAULT_HEALTH],
        description="Run in the new slot before switching; {python}, {slot}, {version} are filled in. "
                    "All must exit 0.")
    health_timeout_s: float = Field(300.0, gt=0)
    restart_command: list[str] = Field(
        default_factory=lambda: ["systemctl", "--no-block", "try-restart", "custody-rfr-appliance.service"],
        description="Run after a switch or rollback so the appliance starts from the new `current`; [] for none.")
    max_boot_attempts: int = Field(3, ge=1, description="Starts of a new version without confirm before rollback.")
    confirm_timeout_s: float = Field(900.0, gt=0, description="Seconds a new version has to confirm its first boot.")
    download_timeout_s: float = Field(60.0, gt=0)


def load_config(path: Path) -> AgentConfig:
    """Read and validate the TOML file; errors name the file and key."""
    try:
        data = tomllib.loads(Path(path).read_text())
        return AgentConfig.model_validate(data)
    except OSError as e:
        raise SettingsError(f"{path}: cannot read the update agent settings ({e}).") from e
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML ({e}).") from e
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"{path}: {where}: {first['msg']}.") from e
