"""``python -m central serve|ingest|devices|accounts``: audit ingest, web interface, device keys, staff accounts.

``serve`` runs the ingest workers and the web interface; ``ingest`` runs the
workers alone (``[ingest] workers`` above 1: that many processes in the shared subscription
``ingest.shared_group``, each started again if it dies; more hosts may join the same group);
``devices register`` records a device's Ed25519 audit key, without which its
messages are refused, and its X25519 key-wrapping key (``--wrap-key``), without which it
receives no library key; ``devices wrap-library-key`` wraps a lineage key for one desk
(the library it is provisioned with); ``devices revoke`` withdraws a desk (registry, signed wipe,
CRL and broker reload, as ``[fleet]`` configures; see docs/fleet.md) and
``devices command-key`` makes the key that signs the wipe and ``devices rotate-command-key`` replaces it
(every desk told the new key in a rekey the old key signs; ``central.fleet.rotate``); ``accounts add``
creates a sign-in for the web interface with one or more roles (auditor,
peer_reviewer, fleet_admin) and ``accounts list`` shows them; ``accounts
disable``/``enable`` and ``accounts password`` end an account's sessions at
once, for someone who left or a password that leaked. ``serve`` runs the web
interface under gunicorn over HTTPS only (``webserver.server``): ``[web]
workers`` processes forked from the one holding the ingest, bounded threads,
request-line and header limits, HSTS; desks fetch ``/tuf`` with their fleet
client certificate (``[web] client_ca_file``, the CRL). ``backup`` and ``restore``
copy the database, the TUF repository and (sealed with a passphrase) the keys out
and back into fresh places (``central.backup``, docs/operations.md).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import ssl
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.audit.store import AuditStore
from central.fleet.command_key import FollowedCommandKey
from central.fleet.registry_store import RegistryStore
from central.fleet.revoke import load_command_key
from central.ingest.mqtt import AuditIngest
from central.ingest.processes import IngestProcesses, worker_client_id
from central.ingest.status import IngestStatus, SharedIngestStatus
from central.peer_review.review_key import load_review_key
from central.publish.announcer import Announcer
from central.settings import CentralSettings, load
from core import keywrap
from core.audit.checkpoint import public_key_from_bytes, public_key_hex
from core.errors import CustodyRfrError, SettingsError
from core.log_format import configure_logging
from core.topics import validate_device_id
from devicekeys.files import write_atomic
from webserver.server import check_tls, https_url, serve

logger = logging.getLogger("central")

_CONNECT_WAIT_S = 10.0


def _ingest_command_key(settings: CentralSettings) -> Ed25519PrivateKey:
    """The key every ack, outcome and announcement is signed with: desks refuse them unsigned, so the
    ingest does not start without it."""
    if settings.fleet.command_key is None:
        raise SettingsError("[fleet] command_key is not set: the ingest signs every ack and peer review outcome "
                            "with it and desks refuse unsigned ones (make it once: python -m central devices "
                            "command-key --out PATH).")
    return FollowedCommandKey(settings.fleet.command_key)  # follows a rotation (rotate-command-key) at once


def _start_ingest(settings: CentralSettings, command_key: Ed25519PrivateKey, *,
                  announce: bool) -> tuple[IngestStatus, Callable[[], None]]:
    """The ingest as ``[ingest] workers`` says: one worker in this process, or several processes of their own
    (``central.ingest.processes``). With ``announce``, the first worker's link also retains the library
    announcements. Returns its status and how to stop it (stores the last batches, keeps the sessions)."""
    if settings.ingest.workers > 1:
        processes = IngestProcesses(settings, announce=announce)
        processes.start()
        if not processes.wait_connected(_CONNECT_WAIT_S * 3):
            logger.warning("not all %s ingest workers are connected to broker %s:%s yet; still trying",
                           settings.ingest.workers, settings.mqtt.host, settings.mqtt.port)
        return processes, processes.stop
    store = AuditStore(settings.database_url)
    worker = AuditIngest(settings.mqtt, store, command_key=command_key, client_id=worker_client_id(settings, 0),
                         shared_group=settings.ingest.shared_group, ack_interval_s=settings.ingest.ack_interval_s,
                         review_key=load_review_key(settings.peer_review.review_key),
                         probe_dir=settings.review_probe_dir, probe_max_days=settings.peer_review.probe_max_days)
    worker.start()
    if not worker.wait_connected(_CONNECT_WAIT_S):
        # Keep going: the worker keeps retrying, the broker and the devices queue events meanwhile.
        logger.warning("not yet connected to broker %s:%s; still trying", settings.mqtt.host, settings.mqtt.port)
    announcer = None
    if announce and settings.publish.repo_dir is not None:
        # The worker owns the MQTT link that retains announcements for the fleet.
        announcer = Announcer(settings.publish.repo_dir, settings.publish, worker.publish_retained,
                              command_key=command_key)
        announcer.start()

    def stop() -> None:
        if announcer is not None:
            announcer.stop()
        worker.stop()
        store.close()

    return worker, stop


def _tls(settings: CentralSettings) -> ssl.SSLContext:
    """The web server's TLS context, and the /tuf client check's files, validated before anything starts."""
    from provisioning.fleet_clients import ClientRefused, FleetClients

    context = check_tls(settings.web, client_ca_file=settings.web.client_ca_file)
    if settings.web.client_ca_file is not None and settings.tuf_crl_file is not None:
        try:
            FleetClients(settings.web.client_ca_file, settings.tuf_crl_file).check_crl()
        except ClientRefused as e:
            raise SettingsError(f"[web] /tuf client check: {e}") from e
    return context


def _serve(config: Path) -> int:
    from central.web import close_stores, create_app

    settings = load(config)
    context = _tls(settings)
    command_key = _ingest_command_key(settings)
    ingest, stop_ingest = _start_ingest(settings, command_key, announce=True)
    status = SharedIngestStatus()
    status.follow(ingest)
    logger.info("central: audit ingest (%s worker(s)) from %s:%s into %s; web interface at %s (%s workers x %s "
                "threads)", settings.ingest.workers, settings.mqtt.host, settings.mqtt.port,
                _without_password(settings.database_url), https_url(settings.web, "/login"), settings.web.workers,
                settings.web.threads, extra={"event": "serving"})
    try:
        # gunicorn's master runs here, beside the ingest; it stops on SIGTERM or SIGINT after the web
        # workers finish their requests, and then ``finally`` stores the last batches and closes the sessions.
        return serve(lambda: create_app(settings, ingest=status), settings.web, context,
                     workers=settings.web.workers, name="central", on_worker_exit=close_stores)
    finally:
        status.stop()
        stop_ingest()


def _without_password(url: str) -> str:
    """The store URL for a log line: no query string, no password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url.split("?")[0])


def _ingest(config: Path) -> int:
    settings = load(config)
    _status, stop_ingest = _start_ingest(settings, _ingest_command_key(settings), announce=False)
    logger.info("central ingest: %s worker(s) from %s:%s", settings.ingest.workers, settings.mqtt.host,
                settings.mqtt.port, extra={"event": "ingesting"})
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        done.wait()
    finally:
        stop_ingest()
    return 0


def _register(config: Path | None, database: str | None, device_id: str, key_file: Path,
              wrap_key_file: Path | None) -> int:
    from devicekeys.wrapping import read_public_key

    validate_device_id(device_id)
    try:
        key = public_key_from_bytes(key_file.read_bytes())
    except FileNotFoundError:
        print(f"central: public key file {key_file} does not exist", file=sys.stderr)
        return 2
    wrap_hex = keywrap.public_key_hex(read_public_key(wrap_key_file)) if wrap_key_file else None
    url = database or load(config).database_url
    registry = RegistryStore(url)
    try:
        registry.register_device(device_id, public_key_hex(key), wrap_public_key_hex=wrap_hex)
    finally:
        registry.close()
    print(f"registered {device_id} with Ed25519 key {public_key_hex(key)[:16]}…"
          + (f" and key-wrapping key {wrap_hex[:16]}…" if wrap_hex else ""))
    return 0


def _wrap_library_key(config: Path | None, database: str | None, args: argparse.Namespace) -> int:
    from central.publish.keys import wrap_for_desk
    from library.snapshot import read_key_file

    registry = RegistryStore(database or load(config).database_url)
    try:
        wrapped = wrap_for_desk(registry, validate_device_id(args.device_id), read_key_file(args.key_file),
                                args.library_id)
    finally:
        registry.close()
    write_atomic(args.out, wrapped.to_text().encode() + b"\n")
    print(f"library key {wrapped.key_id[:12]} wrapped for {args.device_id} in {args.out}; give the desk that file "
          f"and set [library] wrapped_key to it (only that desk's sealed key-wrapping key opens it).")
    return 0


def _list_devices(config: Path | None, database: str | None) -> int:
    registry = RegistryStore(database or load(config).database_url)
    try:
        for device, key in registry.registered_devices().items():
            print(f"{device}\t{key}")
    finally:
        registry.close()
    return 0


def _revoke(config: Path | None, database: str | None, device_id: str, by: str, reason: str) -> int:
    from central.fleet.revoke import PkiTarget, revoke_device
    from central.ingest.mqtt import publish_once

    settings = load(config) if config else None
    registry = RegistryStore(database or (settings.database_url if settings else ""))
    key = send = pki = None
    if settings is not None:
        fleet, mqtt = settings.fleet, settings.mqtt
        key = load_command_key(fleet.command_key) if fleet.command_key is not None else None
        send = lambda topic, payload: publish_once(mqtt, topic, payload)  # noqa: E731
        pki = PkiTarget(fleet.ca_dir, fleet.broker_dir, fleet.broker_pid_file) if fleet.ca_dir else None
    try:
        result = revoke_device(registry, device_id, revoked_by=by, reason=reason, command_key=key, send=send,
                               pki=pki)
    finally:
        registry.close()
    print(result.summary())
    return 0 if (result.wipe_sent or key is None) else 1


def _request_resend(config: Path, since: str, device_id: str | None, by: str) -> int:
    from central.fleet.resend import ResendLog, ResendRequestError, request_resend
    from central.ingest.mqtt import publish_once

    try:
        moment = datetime.fromisoformat(since)
    except ValueError as e:
        raise ResendRequestError(f"--since {since!r} is not an ISO 8601 time ({e}).") from e
    settings = load(config)
    if settings.fleet.command_key is None:
        raise ResendRequestError("[fleet] command_key is not set: central cannot sign the request.")
    key = load_command_key(settings.fleet.command_key)
    registry, log = RegistryStore(settings.database_url), ResendLog(settings.database_url)
    try:
        sent = request_resend(registry, log, since=moment, devices=None if device_id is None else [device_id],
                              requested_by=by, command_key=key,
                              send=lambda topic, payload: publish_once(settings.mqtt, topic, payload))
    finally:
        registry.close()
        log.close()
    for request in sent:
        print(f"{request.device_id}\t{'sent' if request.sent else 'NOT SENT (broker refused)'}\t{request.nonce}")
    return 0 if all(r.sent for r in sent) else 1


def _rotate_command_key(config: Path, by: str) -> int:
    from central.fleet.rotate import RotationError, RotationLog, rotate_command_key
    from central.ingest.mqtt import publish_once

    settings = load(config)
    if settings.fleet.command_key is None:
        raise RotationError("[fleet] command_key is not set: there is no fleet-command key to rotate (make the first "
                            "one with python -m central devices command-key).")
    registry, log = RegistryStore(settings.database_url), RotationLog(settings.database_url)
    try:
        rotation = rotate_command_key(settings.fleet.command_key, registry, log, rotated_by=by,
                                      send=lambda topic, payload: publish_once(settings.mqtt, topic, payload))
    finally:
        registry.close()
        log.close()
    for device in rotation.sent:
        print(f"{device}\trekey sent")
    for device in rotation.not_sent:
        print(f"{device}\tNOT SENT (broker refused)")
    print(rotation.summary())
    return 0 if rotation.switched and not rotation.not_sent else 1


def _command_key(out: Path) -> int:
    from central.fleet.revoke import generate_command_key

    public = generate_command_key(out)
    print(f"fleet-command key in {out} (keep it on central, 0600); give every desk {public} and set "
          f"fleet_command_public_key to it; set [fleet] command_key = \"{out}\" in central's settings.")
    return 0


def _typed_password(args: argparse.Namespace, prompt: str, undone: str) -> str | None:
    """The first line of stdin, or typed twice so a typo cannot lock someone out; None once the two differ."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass(prompt)
    if getpass.getpass("Same password again: ") != password:
        print(f"central: the two passwords differ; {undone}", file=sys.stderr)
        return None
    return password


def _accounts(args: argparse.Namespace) -> int:
    """Manage central's web accounts; prints one line a person can act on."""
    from central.accounts.service import AccountError, AccountService
    from central.accounts.store import AccountStore

    command = args.accounts_command
    undone = "No account was created." if command == "add" else "Nothing was changed."
    store = AccountStore(args.database or load(args.config).database_url)
    try:
        service = AccountService(store)
        if command == "list":
            for account in service.list():
                print(f"{account.username}\t{','.join(sorted(account.roles))}"
                      + ("\tdisabled" if account.disabled else ""))
            return 0
        try:
            if command == "add":
                password = _typed_password(args, f"Password for {args.username}: ", "no account was created.")
                if password is None:
                    return 2
                account = service.add(args.username, args.roles, password)
                message = f"created central account {account.username} with roles {', '.join(sorted(account.roles))}"
            elif command == "password":
                name = service.existing(args.username).username  # before the prompt: no typing for a wrong name
                password = _typed_password(args, f"New password for {name}: ", "the password was not changed.")
                if password is None:
                    return 2
                account = service.change_password(name, password)
                still = f"; it is still disabled (python -m central accounts enable {name})" if account.disabled else ""
                message = (f"changed the password of central account {name}: its sessions have ended and any lock "
                           f"is lifted{still}")
            elif command == "disable":
                name = args.username.strip()
                message = (f"disabled central account {name}: its sessions have ended and it cannot sign in until "
                           f"python -m central accounts enable {name}" if service.disable(name)
                           else f"central account {name} was already disabled; nothing changed")
            else:
                name = args.username.strip()
                message = (f"enabled central account {name}: it can sign in again (sessions from before stay ended)"
                           if service.enable(name) else f"central account {name} was not disabled; nothing changed")
        except AccountError as e:
            print(f"central: {e} {undone}", file=sys.stderr)
            return 2
    finally:
        store.close()
    print(message)
    return 0


def _backup_or_restore(args: argparse.Namespace) -> int:
    from central.backup import back_up, read_passphrase, restore

    settings = load(args.config)
    passphrase = read_passphrase(args.passphrase_file)
    if args.command == "backup":
        manifest = back_up(settings, args.out, passphrase, pg_bin=args.pg_bin)
        print(f"backed up central into {args.out}: {manifest['database']}, {len(manifest['files'])} files, keys "
              f"({', '.join(sorted(manifest['secrets'])) or 'none'}) sealed in secrets.enc; keep the passphrase apart")
        for setting in manifest["missing"]:
            print(f"warning: {setting} names a key file or folder that does not exist: it is NOT in this backup",
                  file=sys.stderr)
        return 1 if manifest["missing"] else 0
    manifest = restore(settings, args.source, passphrase, pg_bin=args.pg_bin)
    print(f"restored the backup of {manifest['created_at']} from {args.source} into the places {args.config} "
          f"names (keys: {', '.join(sorted(manifest['secrets'])) or 'none'}); start central and the desks' events "
          f"carry on from where it was")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="receive audit events and serve the web interface")
    serve.add_argument("--config", type=Path, required=True, help="central settings TOML file")
    ingest = sub.add_parser("ingest", help="receive audit events only (no web interface)")
    ingest.add_argument("--config", type=Path, required=True, help="central settings TOML file")
    devices = sub.add_parser("devices", help="the registry of device audit keys")
    dsub = devices.add_subparsers(dest="devices_command", required=True)
    reg = dsub.add_parser("register", help="record a device's Ed25519 public key (PEM, raw or hex)")
    reg.add_argument("--id", required=True, dest="device_id")
    reg.add_argument("--public-key", required=True, type=Path, dest="key_file")
    reg.add_argument("--wrap-key", type=Path, dest="wrap_key_file",
                     help="the desk's key-wrapping public key (DATA/pki/library-wrap.pub from device-keygen)")
    wrapk = dsub.add_parser("wrap-library-key", help="wrap a library lineage key for one registered desk")
    wrapk.add_argument("--id", required=True, dest="device_id")
    wrapk.add_argument("--key-file", required=True, type=Path, help="the lineage's key file (stays on central)")
    wrapk.add_argument("--library-id", default="national")
    wrapk.add_argument("--out", required=True, type=Path, help="the wrapped key file to give the desk")
    lst = dsub.add_parser("list", help="list registered devices")
    rev = dsub.add_parser("revoke", help="withdraw a desk: refuse its messages, send a signed wipe, revoke its "
                          "certificates (as [fleet] in --config says)")
    rev.add_argument("--id", required=True, dest="device_id")
    rev.add_argument("--by", default="central command line", help="who is revoking (recorded)")
    rev.add_argument("--reason", default="revoked", help="why (recorded)")
    resend = dsub.add_parser("request-resend", help="after a restore: ask desks (signed, recorded) to send again "
                             "the audit events they logged since the backup")
    resend.add_argument("--since", required=True, help="when the restored backup was taken (ISO 8601 with zone)")
    target = resend.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", dest="device_id", help="one desk")
    target.add_argument("--all", action="store_true", help="every registered, unrevoked desk")
    resend.add_argument("--by", default="central command line", help="who is asking (recorded)")
    resend.add_argument("--config", type=Path, required=True, help="central settings TOML file")
    key = dsub.add_parser("command-key", help="make central's fleet-command signing key (once)")
    key.add_argument("--out", required=True, type=Path)
    rotate = dsub.add_parser("rotate-command-key", help="replace the fleet-command key: every registered, unrevoked "
                             "desk is sent the new public key signed with the old one (recorded); the old key is "
                             "kept as <file>.retired-<fingerprint>")
    rotate.add_argument("--config", type=Path, required=True, help="central settings TOML file")
    rotate.add_argument("--by", default="central command line", help="who is rotating (recorded)")
    for p in (reg, wrapk, lst, rev):
        p.add_argument("--config", type=Path, help="central settings TOML file (for the store URL)")
        p.add_argument("--database", help="store URL instead of --config (sqlite:///path or postgresql://...)")
    accounts = sub.add_parser("accounts", help="sign-in accounts for the web interface")
    asub = accounts.add_subparsers(dest="accounts_command", required=True)
    add = asub.add_parser("add", help="create an account with one or more roles")
    add.add_argument("--username", required=True)
    add.add_argument("--role", action="append", default=[], dest="roles", required=True,
                     help="auditor, peer_reviewer or fleet_admin; repeat for several")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    alist = asub.add_parser("list", help="list accounts, their roles, and 'disabled' for a disabled one")
    apw = asub.add_parser("password", help="set a new password (typed twice); ends the account's sessions and "
                          "lifts a lock")
    apw.add_argument("username", metavar="NAME")
    apw.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    adis = asub.add_parser("disable", help="stop an account signing in and end its sessions at once")
    aen = asub.add_parser("enable", help="let a disabled account sign in again")
    for p in (adis, aen):
        p.add_argument("username", metavar="NAME")
    for p in (add, alist, apw, adis, aen):
        p.add_argument("--config", type=Path, help="central settings TOML file (for the store URL)")
        p.add_argument("--database", help="store URL instead of --config (sqlite:///path or postgresql://...)")
    backup = sub.add_parser("backup", help="back up the database, the TUF repository and (encrypted) the keys")
    backup.add_argument("--out", type=Path, required=True, help="a new folder for this backup")
    restore = sub.add_parser("restore", help="restore a backup into the places --config names (all must be new)")
    restore.add_argument("--from", type=Path, required=True, dest="source", help="the backup folder")
    for p in (backup, restore):
        p.add_argument("--config", type=Path, required=True, help="central settings TOML file")
        p.add_argument("--passphrase-file", type=Path, required=True,
                       help="first line: the passphrase the key archive is sealed with (16+ characters)")
        p.add_argument("--pg-bin", type=Path, help="folder of pg_dump/pg_restore when they are not on PATH")
    args = parser.parse_args(argv)
    configure_logging("central")  # one JSON object per line on stderr (journald stores it as it is)
    try:
        if args.command == "serve":
            return _serve(args.config)
        if args.command == "ingest":
            return _ingest(args.config)
        if args.command in ("backup", "restore"):
            return _backup_or_restore(args)
        if args.command == "devices":
            if args.devices_command == "command-key":
                return _command_key(args.out)
            if args.devices_command == "rotate-command-key":
                return _rotate_command_key(args.config, args.by)
            if args.devices_command == "request-resend":
                return _request_resend(args.config, args.since, args.device_id, args.by)
            if not (args.config or args.database):
                parser.error("give --config or --database")
            if args.devices_command == "register":
                return _register(args.config, args.database, args.device_id, args.key_file, args.wrap_key_file)
            if args.devices_command == "wrap-library-key":
                return _wrap_library_key(args.config, args.database, args)
            if args.devices_command == "revoke":
                return _revoke(args.config, args.database, args.device_id, args.by, args.reason)
            return _list_devices(args.config, args.database)
        if args.command == "accounts":
            if not (args.config or args.database):
                parser.error("give --config or --database")
            return _accounts(args)
    except CustodyRfrError as e:
        print(f"central: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
