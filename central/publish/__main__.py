"""``python -m central.publish``: create the signed library repository, publish libraries, keep it fresh.

    init --repo DIR --root-keys-dir OFFLINE_DIR [--root-keys 3 --root-threshold 2]
    publish --repo DIR --file LIBRARY_OR_DELTA --kind full|delta --key-file LIBRARY_KEY
    publish-config --repo DIR --file CONFIG_JSON      (signed desk configuration, docs/fleet.md)
    hash-password < PASSWORD                          (an account's password_hash for the configuration)
    refresh-timestamp --repo DIR        (run hourly: desks refuse a timestamp older than a day)
    withdraw --repo DIR --target NAME
    status --repo DIR

Expiry periods come from ``[publish]`` in central's settings file (``--config``) or
``RFR_CENTRAL__PUBLISH__*``. Problems print one line saying what to do, and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from central.publish import describe
from central.publish.announcer import ANNOUNCEMENT_FILE  # the running server retains it on MQTT
from central.publish.repository import PublishError, TufRepository, init_repository
from central.publish.settings import PublishSettings, load
from core.desk_config import hash_password
from core.errors import CustodyRfrError
from core.files import atomic_write
from core.library_announce import LibraryAnnouncement
from library.snapshot import read_key_file
from tufrepo.repository import utc_now

ROOT_WARNING = timedelta(days=30)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m central.publish", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="central's settings file (only [publish] is read)")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create keys and version 1 of every role")
    init.add_argument("--repo", type=Path, required=True)
    init.add_argument("--root-keys-dir", type=Path, required=True,
                      help="new folder for the offline root keys; move it off this server afterwards")
    init.add_argument("--root-keys", type=int)
    init.add_argument("--root-threshold", type=int)
    pub = sub.add_parser("publish", help="sign a full library or a delta as a new target")
    pub.add_argument("--repo", type=Path, required=True)
    pub.add_argument("--file", type=Path, required=True)
    pub.add_argument("--kind", choices=["full", "delta"], required=True)
    pub.add_argument("--key-file", type=Path, required=True, help="the library key (reads version and digest)")
    config = sub.add_parser("publish-config", help="validate and sign a desk configuration (accounts, "
                            "thresholds, retention) as a new target")
    config.add_argument("--repo", type=Path, required=True)
    config.add_argument("--file", type=Path, required=True)
    sub.add_parser("hash-password", help="read a password on stdin, print its hash in the desk's stored format")
    refresh = sub.add_parser("refresh-timestamp", help="re-sign timestamp (and snapshot/targets when due)")
    refresh.add_argument("--repo", type=Path, required=True)
    withdraw = sub.add_parser("withdraw", help="stop offering a target")
    withdraw.add_argument("--repo", type=Path, required=True)
    withdraw.add_argument("--target", required=True)
    status = sub.add_parser("status", help="versions and expiry of each role, and the published targets")
    status.add_argument("--repo", type=Path, required=True)
    return parser


def _settings(args: argparse.Namespace) -> PublishSettings:
    settings = load(args.config)
    overrides = {name: getattr(args, name, None) for name in ("root_keys", "root_threshold")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        settings = PublishSettings.model_validate({**settings.model_dump(), **overrides})
    return settings


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    if args.command == "hash-password":
        password = sys.stdin.readline().rstrip("\r\n")
        print(hash_password(password))
        return 0
    if args.command == "init":
        repo = init_repository(args.repo, args.root_keys_dir, settings)
        print(f"Repository created in {repo.repo_dir}. Ship {repo.metadata_dir / '1.root.json'} to desks at "
              f"provisioning. Move {args.root_keys_dir} ({settings.root_keys} root keys, any "
              f"{settings.root_threshold} sign a new root) to offline storage now.")
        return 0
    repo = TufRepository(args.repo, settings)
    if args.command == "publish":
        key = read_key_file(args.key_file)
        if args.kind == "full":
            info = describe.describe_full(args.file, key)
        else:
            info = describe.describe_delta(args.file, key)
        repo.publish(args.file, info)
        announcement = LibraryAnnouncement.now(info.library_version, info.name, info.kind, info.result_digest)
        atomic_write(repo.repo_dir / ANNOUNCEMENT_FILE, announcement.to_bytes())
        print(f"Published {info.name} (library version {info.library_version}); "
              f"timestamp version {repo.versions()['timestamp']}. Announcement: "
              f"{announcement.to_bytes().decode()}")
    elif args.command == "publish-config":
        _publish_config(repo, args.file)
    elif args.command == "refresh-timestamp":
        signed = repo.refresh()
        expires = repo.expires()
        print(f"Re-signed {', '.join(signed)}; timestamp valid until {expires['timestamp']:%Y-%m-%d %H:%M}Z.")
        if expires["root"] - utc_now() < ROOT_WARNING:
            print(f"Warning: root expires {expires['root']:%Y-%m-%d}; re-sign it with the offline root keys.")
    elif args.command == "withdraw":
        repo.withdraw(args.target)
        print(f"{args.target} is no longer offered; desks that installed it keep it until a newer version.")
    else:
        versions, expires = repo.versions(), repo.expires()
        for role in ("root", "targets", "snapshot", "timestamp"):
            print(f"{role:9} version {versions[role]:4}  expires {expires[role]:%Y-%m-%d %H:%M}Z")
        for name, info in sorted(repo.published().items()):
            print(f"{name}  {info.kind} v{info.library_version}  {info.embedder_id}  {info.result_digest}")
        for name, config in sorted(repo.published_configs().items()):
            print(f"{name}  config v{config.config_version}  {config.digest}")
    return 0


def _publish_config(repo: TufRepository, file: Path) -> None:
    """Sign a configuration only if desks would accept it: valid, and newer than every one offered."""
    try:
        info = describe.describe_config(file)
    except OSError as e:
        raise PublishError(f"Cannot read {file}: {e.strerror or e}.") from e
    newest = max((c.config_version for c in repo.published_configs().values()), default=0)
    if info.config_version <= newest:
        raise PublishError(f"{file} is configuration version {info.config_version}, but version {newest} is "
                           f"already published; desks apply only newer versions. Raise \"version\" above {newest}.")
    repo.publish(file, info)
    announcement = LibraryAnnouncement.now(info.config_version, info.name, info.kind, info.digest)
    atomic_write(repo.repo_dir / ANNOUNCEMENT_FILE, announcement.to_bytes())
    print(f"Published {info.name} (configuration version {info.config_version}); timestamp version "
          f"{repo.versions()['timestamp']}. Desks apply it at their next check.")


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except CustodyRfrError as e:  # PublishError, SnapshotError, SettingsError, WireFormatError
        print(f"publish: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
