"""``python -m appliance selftest``: prove an installed release can do the desk's job before it is trusted.

The update agent runs this in a newly installed slot, beside the desk that is still serving from the
old slot, and switches only if every check passes. So it checks what a broken release would break
(the face models load and infer, the installed library opens with its key and was built for this
embedder, a search ranks the right subject first, the broker answers) and it must not disturb the
running desk:

- It never opens the device database, and never constructs ``LibraryStore`` (whose constructor takes
  the store's lock file and removes leftovers of interrupted installs). It reads the store's
  ``current`` pointer itself and opens that snapshot file with ``Snapshot``, which only reads.
  (SQLite still opens the file read-write at the OS level; under the update unit's
  ``ProtectSystem=strict`` the data directory is read-only anyway, and SQLite then opens it read-only.)
- Its MQTT check never takes over the desk's broker session (see ``check_mqtt``).

Search check: with ``--probe PHOTO --expect SUBJECT`` (a known photo that ships with the deployment,
of a subject enrolled in the library) the photo goes through the whole pipeline and ``SUBJECT`` must
be at rank 1. Without a probe a synthetic self-consistency check runs instead: the stored template of
the library's first record is searched and must come back at rank 1 (that record, or another record
of the same subject with an identical template). That proves the index, records and templates agree
and the models infer, but not that the models recognise faces: only a known probe proves that.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.settings import ApplianceSettings, DeskMqttSettings
from appliance.storage.library_folders import held_ids, is_destroyed
from appliance.storage.library_keys import LibraryKeyring, open_library_keys
from devicekeys.tls import client_context
from library.snapshot import Snapshot
from library.store import POINTER
from models.pipeline import FacePipeline

SELFTEST_CLIENT_SUFFIX = "-selftest"
#: After a TLS 1.3 handshake the broker checks our certificate and sends an alert if it refuses it; a
#: broker that accepted it waits, silent, for CONNECT. This long without an alert means accepted.
TLS_REFUSAL_WAIT_S = 1.0

# MQTT v5 CONNACK reason codes a desk can meet (OASIS MQTT 5.0, 3.2.2.2).
_CONNACK_REASONS = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
    0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
    0x95: "packet too large", 0x97: "quota exceeded", 0x9F: "connection rate exceeded",
}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, printed as one line an engineer (or the agent's log) can act on."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: ok ({self.detail})" if self.ok else f"{self.name}: FAILED: {self.detail}"


def _failure(e: BaseException) -> str:
    """The error's own message (ours are worded for people); the type only when there is no message."""
    text = str(e).strip()
    return text if text else type(e).__name__


# --- models ---------------------------------------------------------------------------------------------

def check_models(load: Callable[[], FacePipeline]) -> tuple[CheckResult, FacePipeline | None]:
    """Load and compile both models, then run each once: a release with a broken runtime fails here."""
    try:
        pipeline = load()
        pipeline.detect(np.full((240, 320, 3), 128, dtype=np.uint8))
        width, height = pipeline.embedder.size
        vector = np.asarray(pipeline.embed_aligned(np.full((height, width, 3), 128, dtype=np.uint8)))
    except Exception as e:  # any failure to load or infer is the finding, not a crash of the check
        return CheckResult("models", False, f"the face models do not load or run: {_failure(e)}"), None
    norm = float(np.linalg.norm(vector))
    if vector.shape != (pipeline.dim,) or not np.isfinite(norm) or abs(norm - 1.0) > 1e-3:
        return CheckResult("models", False, f"the embedder returned shape {vector.shape} with norm {norm:.3f}, "
                                            f"not a unit {pipeline.dim}-d template"), None
    return CheckResult("models", True, f"embedder {pipeline.embedder_id}, {pipeline.dim}-d templates"), pipeline


# --- library --------------------------------------------------------------------------------------------

def _checked_library(settings: ApplianceSettings) -> str:
    """The library the check opens: the provisioned one, or, once central retired it and the desk destroyed
    it, the first other library the desk holds (a desk serving only other libraries is still healthy)."""
    root, primary = settings.library_store_dir, settings.library.library_id
    if not is_destroyed(root, primary):
        return primary
    return next((i for i in held_ids(root) if (root / i / POINTER).exists()), primary)


def _store_folder(settings: ApplianceSettings) -> Path:
    """The checked library's store: its own folder (data_dir/library/<library_id>), or the single-library
    folder of a desk not yet started on this version (the desk moves it there when it starts)."""
    root = settings.library_store_dir
    return root if (root / POINTER).exists() else root / _checked_library(settings)


def current_library_file(settings: ApplianceSettings) -> tuple[Path, str]:
    """The snapshot the desk searches: the store's current version, or, before the desk's first start has
    installed anything, the provisioned file it will install. Read without ``LibraryStore`` (see above)."""
    root = _store_folder(settings)
    try:
        pointer = json.loads((root / POINTER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return settings.library.path, "provisioned file, not yet installed by the desk"
    return root / "versions" / str(pointer["file"]), "installed"


def current_library_key_id(settings: ApplianceSettings) -> str | None:
    """The key id the store's pointer names (None before the first install or for a pointer without one)."""
    try:
        pointer = json.loads((_store_folder(settings) / POINTER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    key_id = pointer.get("key_id")
    return key_id if isinstance(key_id, str) else None


def check_library(settings: ApplianceSettings, embedder_id: str | None) -> tuple[CheckResult, Snapshot | None]:
    """Open the current snapshot with the key; it must load its index and match the installed embedder."""
    try:
        path, origin = current_library_file(settings)
        keys = open_library_keys(settings, None)  # None: a sealed key still unseals; nothing is moved or made
        keys = LibraryKeyring(keys).for_library(_checked_library(settings)) if (
            _checked_library(settings) != settings.library.library_id) else keys
        key = keys.require(current_library_key_id(settings) or keys.provisioned or "")
        snapshot = Snapshot.open(path, key, expected_embedder=embedder_id)
    except Exception as e:
        return CheckResult("library", False, _failure(e)), None
    if snapshot.count == 0:
        snapshot.close()
        return CheckResult("library", False, f"{path.name} holds no records; there is nothing to search"), None
    return CheckResult("library", True, f"version {snapshot.version}, {snapshot.count} records, "
                                        f"{snapshot.embedder_id}, {origin}"), snapshot


# --- search ---------------------------------------------------------------------------------------------

def check_probe_search(pipeline: FacePipeline, snapshot: Snapshot, probe: Path, expect: str,
                       top_k: int) -> CheckResult:
    """The known probe photo, through the whole pipeline: ``expect`` must be the rank-1 candidate."""
    try:
        result = pipeline.process(Path(probe).read_bytes())
        candidates = snapshot.search(result.template, k=min(top_k, snapshot.count))
    except Exception as e:
        return CheckResult("search", False, f"probe {probe}: {_failure(e)}")
    if not candidates:
        return CheckResult("search", False, f"probe {probe}: the search returned no candidates")
    top = candidates[0]
    if top.record.subject_ref == expect:
        return CheckResult("search", True, f"probe {Path(probe).name}: {expect} at rank 1, score {top.score:.3f}")
    ranks = [c.rank for c in candidates if c.record.subject_ref == expect]
    where = f"at rank {ranks[0]}" if ranks else f"not in the top {len(candidates)}"
    return CheckResult("search", False, f"probe {Path(probe).name}: expected {expect} at rank 1, got "
                                        f"{top.record.subject_ref} (score {top.score:.3f}); {expect} is {where}")


def check_self_search(snapshot: Snapshot) -> CheckResult:
    """No probe configured: a stored template must find its own record (or its subject) at rank 1."""
    try:
        record = next(snapshot.records())
        assert record.record_id is not None  # records read from a snapshot always carry their id
        candidates = snapshot.search(snapshot.template(record.record_id), k=min(5, snapshot.count))
    except Exception as e:
        return CheckResult("search", False, f"self-consistency: {_failure(e)}")
    top = candidates[0] if candidates else None
    if top is not None and (top.record.record_id == record.record_id or top.record.subject_ref == record.subject_ref):
        return CheckResult("search", True, f"self-consistency (no probe given): record {record.record_id} of "
                                           f"{record.subject_ref} at rank 1; recognition is not proven without "
                                           "--probe")
    got = "nothing" if top is None else f"{top.record.subject_ref} (record {top.record.record_id})"
    return CheckResult("search", False, f"self-consistency: the stored template of record {record.record_id} "
                                        f"({record.subject_ref}) found {got} at rank 1: the index and the "
                                        "templates disagree")


# --- MQTT -----------------------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, keepalive_s: int) -> bytes:
    """MQTT v5 CONNECT with Clean Start and no Session Expiry property (expiry 0): the broker keeps no
    session for this client id after we leave, and there is no earlier session of ours to resume."""
    body = _utf8("MQTT") + bytes([5, 0x02]) + keepalive_s.to_bytes(2, "big") + b"\x00" + _utf8(client_id)
    return b"\x10" + _varint(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection before answering CONNECT")
        data += chunk
    return data


def _read_connack(sock: socket.socket) -> int:
    """The CONNACK's reason code (0 = accepted)."""
    first = _recv_exact(sock, 1)[0]
    if first >> 4 != 2:
        raise ConnectionError(f"the broker answered CONNECT with packet type {first >> 4}, not CONNACK")
    length, shift = 0, 0
    while True:
        byte = _recv_exact(sock, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    body = _recv_exact(sock, length)
    if len(body) < 2:
        raise ConnectionError("the broker sent a truncated CONNACK")
    return body[1]


def check_mqtt(settings: DeskMqttSettings, device_id: str, timeout_s: float) -> CheckResult:
    """Reach the broker the way the desk does, without touching the desk's own session.

    Plain TCP (the development broker, client ids as given): a full MQTT v5 CONNECT as
    ``<device>-selftest`` with Clean Start and session expiry 0, CONNACK checked, then DISCONNECT. The
    desk's client id is ``appliance-<device>``, so its persistent session is never named.

    Mutual TLS (the fleet broker's device listener): ``provisioning.broker`` sets
    ``use_username_as_clientid``, so Mosquitto replaces any client id with the certificate's CN, the
    device id. A CONNECT from here would therefore take over the running desk's session (Mosquitto
    disconnects the older client) and, with Clean Start, discard its queued acks, peer-review outcomes
    and fleet commands. So over TLS this check stops after the TLS handshake: the broker is reachable,
    it chains to the fleet CA with its host name, our certificate and key (TPM-sealed or file) load, and
    the broker accepts our certificate (not revoked, same CA; a refusal arrives as a TLS alert). It does
    not send CONNECT, so the ACL is not exercised: the running desk's own connection proves that.
    """
    where = f"{settings.host}:{settings.port}"
    tls = settings.ca_file is not None and settings.cert_file is not None and settings.key_file is not None
    try:
        context = client_context(settings.ca_file, settings.cert_file, settings.key_file) if tls else None  # type: ignore[arg-type]
    except Exception as e:
        return CheckResult("mqtt", False, f"the device's TLS certificate and key do not load: {_failure(e)}")
    try:
        raw = socket.create_connection((settings.host, settings.port), timeout=timeout_s)
    except OSError as e:
        return CheckResult("mqtt", False, f"cannot reach the broker at {where}: {_failure(e)}")
    try:
        if context is not None:
            return _tls_handshake_only(context, raw, settings.host, where)
        client_id = f"{device_id}{SELFTEST_CLIENT_SUFFIX}"
        raw.sendall(connect_packet(client_id, settings.keepalive_s))
        code = _read_connack(raw)
        if code != 0:
            reason = _CONNACK_REASONS.get(code, f"reason code 0x{code:02x}")
            return CheckResult("mqtt", False, f"the broker at {where} refused {client_id}: {reason}")
        raw.sendall(b"\xe0\x00")  # DISCONNECT, normal disconnection: no will, no session left behind
        return CheckResult("mqtt", True, f"{where}, plain TCP, connected as {client_id} (clean session) "
                                         "and disconnected")
    except (OSError, ConnectionError) as e:
        return CheckResult("mqtt", False, f"the broker at {where} did not accept a connection: {_failure(e)}")
    finally:
        raw.close()


def _tls_handshake_only(context: ssl.SSLContext, raw: socket.socket, host: str, where: str) -> CheckResult:
    try:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(TLS_REFUSAL_WAIT_S)
            try:
                data = tls.recv(1)
            except TimeoutError:
                return CheckResult("mqtt", True, f"{where}, TLS {tls.version()} handshake with the device "
                                                 "certificate accepted; no MQTT CONNECT (the device listener "
                                                 "pins the client id to the certificate, so a CONNECT would "
                                                 "take over the running desk's session)")
            if data:
                return CheckResult("mqtt", False, f"the broker at {where} sent data before CONNECT: not MQTT")
            return CheckResult("mqtt", False, f"the broker at {where} closed the connection after the TLS "
                                              "handshake: it refused this device's certificate")
    except ssl.SSLError as e:
        return CheckResult("mqtt", False, f"TLS with the broker at {where} failed (untrusted broker, or this "
                                          f"device's certificate refused or revoked): {_failure(e)}")


# --- all of it ------------------------------------------------------------------------------------------

def run_selftest(settings: ApplianceSettings, *, probe: Path | None = None, expect: str | None = None,
                 mqtt_timeout_s: float = 10.0, load_pipeline: Callable[[], FacePipeline] = FacePipeline.load,
                 report: Callable[[CheckResult], None] = lambda r: print(r.line(), flush=True)
                 ) -> list[CheckResult]:
    """Run every check, reporting each as it finishes; a check whose input failed reports why it did not run.

    ``load_pipeline`` lets tests share one compiled pipeline across cases; the command loads its own.
    """
    if (probe is None) != (expect is None):
        raise ValueError("give --probe and --expect together")
    results: list[CheckResult] = []

    def done(result: CheckResult) -> None:
        results.append(result)
        report(result)

    models, pipeline = check_models(load_pipeline)
    done(models)
    library, snapshot = check_library(settings, pipeline.embedder_id if pipeline else None)
    done(library)
    try:
        if snapshot is None or pipeline is None:
            done(CheckResult("search", False, "not run: " + ("the library did not open" if snapshot is None
                                                             else "the face models did not load")))
        elif probe is not None and expect is not None:
            done(check_probe_search(pipeline, snapshot, probe, expect, settings.search.top_k))
        else:
            done(check_self_search(snapshot))
    finally:
        if snapshot is not None:
            snapshot.close()
    done(check_mqtt(settings.mqtt, settings.device_id, mqtt_timeout_s))
    return results
