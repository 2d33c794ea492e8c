"""``python -m central.publish``: create the signed library repository, publish libraries, keep it fresh.

    init --repo DIR --root-keys-dir OFFLINE_DIR [--root-keys 3 --root-threshold 2]
    publish --repo DIR --file LIBRARY_OR_DELTA --kind full|delta --key-file LIBRARY_KEY [--library-id ID]
    publish-config --repo DIR --file CONFIG_JSON      (signed desk configuration, sealed to each desk: accounts
                                                       with their search_authorisation, thresholds, retention)
    publish-authorisations --repo DIR                 (each desk's signed library authorisation manifest)
    hash-password < PASSWORD                          (an account's password_hash for the configuration)
    refresh-timestamp --repo DIR        (run hourly: desks refuse a timestamp older than a day)
    withdraw --repo DIR --target NAME
    status --repo DIR
    rotate-key --repo DIR --root-keys-dir OFFLINE_DIR --role targets|snapshot|timestamp
                                        (a new online key, named alone by the next root, which the offline
                                         root keys sign; desks follow the root chain)
    re-sign-root --repo DIR --root-keys-dir OFFLINE_DIR [--expiry-days N] [--replace-root-key KEYID ...]
                                        (the next root with a new expiry; replaced root keys get new files)

``rotate-key`` and ``re-sign-root`` need the offline root keys back for a moment (a threshold of them signs
the next root, ``N.root.json``, which desks walk from the root they were shipped with); each new root is valid
for ``root_expiry_days`` unless ``--expiry-days`` says otherwise (``tufrepo/root_signing.py``).

Expiry periods come from ``[publish]`` in central's settings file (``--config``) or
``RFR_CENTRAL__PUBLISH__*``. ``publish`` and ``publish-config`` also read central's device registry
(``--database``, or the database of ``--config``): the library key is wrapped to every registered,
unrevoked desk (``keys-<key id>.json``), re-keyed first if a revoked desk held it, and the
configuration is sealed to the same desks (``central/publish/keys.py``). Problems print one line
saying what to do, and exit 1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from central.fleet.registry_store import RegistryStore
from central.libraries.store import LibraryStore
from central.publish import keys
from central.publish.announcer import ANNOUNCEMENT_FILE  # the running server retains it on MQTT
from central.publish.authorisations import publish_authorisations
from central.publish.repository import PublishError, TufRepository, init_repository
from central.publish.settings import PublishSettings, load, load_database_url
from core.desk_config import hash_password
from core.errors import CustodyRfrError
from core.files import atomic_write
from core.library_announce import LibraryAnnouncement
from tufrepo.repository import utc_now

ROOT_WARNING = timedelta(days=30)
MIN_ROOT_DAYS, MAX_ROOT_DAYS = 30, 3 * 365  # as [publish] root_expiry_days


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
    pub.add_argument("--key-file", type=Path, required=True,
                     help="the lineage's key file (rotated in place when the publication re-keys)")
    pub.add_argument("--library-id", default="national", help="the lineage desks know it as ([library] library_id)")
    config = sub.add_parser("publish-config", help="validate and sign a desk configuration (accounts and their "
                            "search_authorisation, thresholds, retention) as a new target; schema and example: "
                            "docs/fleet.md, 'Signed configuration'")
    config.add_argument("--repo", type=Path, required=True)
    config.add_argument("--file", type=Path, required=True)
    authorisations = sub.add_parser("publish-authorisations", help="sign a new authorisation manifest for each "
                                    "desk whose libraries changed (central's library tables)")
    authorisations.add_argument("--repo", type=Path, required=True)
    authorisations.add_argument("--actor", default="publish-cli", help="who publishes, for the library log")
    for p in (pub, config, authorisations):
        p.add_argument("--database", help="central's database URL (default: the one --config names)")
    sub.add_parser("hash-password", help="read a password on stdin, print its hash in the desk's stored format")
    refresh = sub.add_parser("refresh-timestamp", help="re-sign timestamp (and snapshot/targets when due)")
    refresh.add_argument("--repo", type=Path, required=True)
    withdraw = sub.add_parser("withdraw", help="stop offering a target")
    withdraw.add_argument("--repo", type=Path, required=True)
    withdraw.add_argument("--target", required=True)
    status = sub.add_parser("status", help="versions and expiry of each role, and the published targets")
    status.add_argument("--repo", type=Path, required=True)
    rotate = sub.add_parser("rotate-key", help="replace an online key (targets, snapshot or timestamp): the "
                            "offline root keys sign the next root naming the new key")
    rotate.add_argument("--role", required=True, choices=list(TufRepository.online_roles))
    resign = sub.add_parser("re-sign-root", help="sign the next root with the offline root keys: a new expiry, "
                            "and replaced root keys if asked")
    resign.add_argument("--expiry-days", type=int,
                        help=f"how long the new root is valid ({MIN_ROOT_DAYS} to {MAX_ROOT_DAYS}; default "
                        "[publish] root_expiry_days)")
    resign.add_argument("--replace-root-key", action="append", default=[], metavar="KEYID",
                        help="a root key id (`status` lists them) to replace by a new key; repeat for several")
    for p in (rotate, resign):
        p.add_argument("--repo", type=Path, required=True)
        p.add_argument("--root-keys-dir", type=Path, required=True,
                       help="the folder of offline root keys (root-1.pem ...) brought back for this")
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
    repo = TufRepository(args.repo, settings, replacing=args.role if args.command == "rotate-key" else None)
    if args.command in ("publish", "publish-config"):
        registry = RegistryStore(_database(args))
        try:
            if args.command == "publish":
                _publish_library(repo, registry, args)
                _warn_unless_backed_up(settings, args.key_file)
            else:
                _publish_config(repo, registry, args.file)
        finally:
            registry.close()
    elif args.command == "publish-authorisations":
        _publish_authorisations(repo, _database(args), args.actor)
    elif args.command == "refresh-timestamp":
        signed = repo.refresh()
        expires = repo.expires()
        print(f"Re-signed {', '.join(signed)}; timestamp valid until {expires['timestamp']:%Y-%m-%d %H:%M}Z.")
        if expires["root"] - utc_now() < ROOT_WARNING:
            print(f"Warning: root expires {expires['root']:%Y-%m-%d}; re-sign it with the offline root keys: "
                  f"python -m central.publish re-sign-root --repo {args.repo} --root-keys-dir OFFLINE_DIR")
    elif args.command == "rotate-key":
        key_id = repo.rotate_online_key(args.role, args.root_keys_dir)
        versions = repo.versions()
        print(f"The {args.role} key is now {key_id} (keys/{args.role}.pem); root version {versions['root']} "
              f"names it and no longer trusts the old key, and {args.role} is re-signed (timestamp version "
              f"{versions['timestamp']}). Desks follow at their next check. Put {args.root_keys_dir} back in "
              f"offline storage, and take a backup of central now.")
    elif args.command == "re-sign-root":
        _re_sign_root(repo, args)
    elif args.command == "withdraw":
        repo.withdraw(args.target)
        print(f"{args.target} is no longer offered; desks that installed it keep it until a newer version.")
    else:
        versions, expires = repo.versions(), repo.expires()
        for role in ("root", "targets", "snapshot", "timestamp"):
            print(f"{role:9} version {versions[role]:4}  expires {expires[role]:%Y-%m-%d %H:%M}Z")
        print(f"root keys: {', '.join(repo.root_key_ids())}")
        for name, info in sorted(repo.published().items()):
            print(f"{name}  {info.kind} v{info.library_version}  {info.embedder_id}  {info.result_digest}")
        for name, config in sorted(repo.published_configs().items()):
            print(f"{name}  config v{config.config_version}  {config.digest}")
        for name, auth in sorted(repo.published_authorisations().items()):
            print(f"{name}  authorisation v{auth.manifest_version} for {auth.device_id}  {auth.digest}")
        for name, kid in sorted(repo.published_keys().items()):
            print(f"{name}  library key {kid} wrapped for the desks trusted when it was published")
    return 0


def _re_sign_root(repo: TufRepository, args: argparse.Namespace) -> None:
    days = args.expiry_days
    if days is not None and not MIN_ROOT_DAYS <= days <= MAX_ROOT_DAYS:
        raise PublishError(f"--expiry-days {days} is outside {MIN_ROOT_DAYS} to {MAX_ROOT_DAYS}: root is re-signed "
                           f"offline about yearly, so it must outlast the time to bring the keys together.")
    change = repo.re_sign_root(args.root_keys_dir, replace=args.replace_root_key,
                               expiry=None if days is None else timedelta(days=days))
    print(f"Root version {change.version} written ({change.version}.root.json), valid until "
          f"{change.expires:%Y-%m-%d}. Desks follow at their next check.")
    for key_id, path in change.new_keys.items():
        print(f"New root key {key_id} in {path}: give it to its holder.")
    for path in change.retired:
        print(f"{path} is a replaced root key that no longer signs root: destroy it.")
    print(f"Put {args.root_keys_dir} back in offline storage.")


def _database(args: argparse.Namespace) -> str:
    """Central's database (the device registry): ``--database``, else the one central's settings name."""
    url = args.database or load_database_url(args.config)
    if url is None:
        raise PublishError("publishing needs central's device registry, to wrap keys for each desk: "
                           "give --database URL or --config central.toml.")
    return str(url)


def _publish_library(repo: TufRepository, registry: RegistryStore, args: argparse.Namespace) -> None:
    publication = keys.publish_library(repo, registry, args.file, args.kind, args.key_file, args.library_id)
    info = publication.info
    announcement = LibraryAnnouncement.now(info.library_version, info.name, info.kind, info.result_digest)
    atomic_write(repo.repo_dir / ANNOUNCEMENT_FILE, announcement.to_bytes())
    print(f"{publication.summary()} Timestamp version {repo.versions()['timestamp']}. Announcement: "
          f"{announcement.to_bytes().decode()}")
    if publication.rekeyed_from:
        print(f"The lineage key in {args.key_file} is new; the old one is kept as {args.key_file}."
              f"retired-{publication.rekeyed_from} and {args.file} is now encrypted under the new key. Build "
              f"further versions and deltas with the new key file.")


def _warn_unless_backed_up(settings: PublishSettings, key_file: Path) -> None:
    """A lineage key central's settings do not name is not in central's backups: say so while it can be fixed."""
    if Path(key_file).resolve() not in {Path(k).resolve() for k in settings.lineage_keys}:
        print(f"Note: {key_file} is not in [publish] lineage_keys of central's settings, so `python -m central "
              f"backup` does not carry it. Add it there, or every further version of this library depends on "
              f"another copy of that file.", file=sys.stderr)


def _publish_config(repo: TufRepository, registry: RegistryStore, file: Path) -> None:
    """Sign a configuration only if desks would accept it: valid, and newer than every one offered; it is sealed
    to every trusted desk, so the published target holds no account name or password hash in the clear."""
    try:
        document = Path(file).read_bytes()
    except OSError as e:
        raise PublishError(f"Cannot read {file}: {e.strerror or e}.") from e
    sealed, info = keys.seal_config(registry, document)
    newest = max((c.config_version for c in repo.published_configs().values()), default=0)
    if info.config_version <= newest:
        raise PublishError(f"{file} is configuration version {info.config_version}, but version {newest} is "
                           f"already published; desks apply only newer versions. Raise \"version\" above {newest}.")
    with tempfile.TemporaryDirectory(prefix="rfr-config-") as work:
        path = Path(work) / info.name
        path.write_bytes(sealed)
        repo.publish(path, info)
    announcement = LibraryAnnouncement.now(info.config_version, info.name, info.kind, info.digest)
    atomic_write(repo.repo_dir / ANNOUNCEMENT_FILE, announcement.to_bytes())
    print(f"Published {info.name} (configuration version {info.config_version}), sealed to "
          f"{len(registry.wrapping_keys())} desk(s); timestamp version {repo.versions()['timestamp']}. Desks apply "
          f"it at their next check; a desk registered later needs the next version.")


def _publish_authorisations(repo: TufRepository, database: str, actor: str) -> None:
    registry, store = RegistryStore(database), LibraryStore(database)
    try:
        revoked = registry.revocations()
        registered = [d for d in registry.registered_devices() if d not in revoked]
        published = publish_authorisations(repo, store, registered, actor, revoked=revoked)
    finally:
        registry.close()
        store.close()
    if not published:
        print("Every desk's authorisation manifest is up to date; nothing was signed.")
    for p in published:
        print(f"Published {p.target}: {len(p.libraries)} librar{'y' if len(p.libraries) == 1 else 'ies'} "
              f"({', '.join(p.libraries) or 'none'}), retired: {', '.join(p.retired) or 'none'}.")
    if published:
        print(f"Timestamp version {repo.versions()['timestamp']}; desks apply their manifest at their next check.")


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except CustodyRfrError as e:  # PublishError, SnapshotError, SettingsError, WireFormatError
        print(f"publish: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
