"""``python -m provisioning``: enrol, configure and cut off custody desks, one command per step.

Central's RFR team (on the enrolment host, where the issuing CA lives): ``init-ca``,
``new-token``, ``issue``, ``server-cert``, ``broker-config``, ``revoke``, ``crl``, and for key rotation
``renew-issuing-ca`` (with the offline root key) and ``reissue-server-certs``. A technician at the desk:
``device-keygen``, ``device-install``, ``seal-key``, ``unseal-key``, ``key-protection``.
Each prints what to do next; errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.errors import CustodyRfrError
from devicekeys import keys
from provisioning import broker, crl, device, issue, renew, tokens
from provisioning.ca import SERVICE_DAYS, CaLayout, IssuingCa, init_ca
from provisioning.errors import CaError
from provisioning.ledger import Ledger


def _listener(text: str) -> broker.Listener:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return broker.Listener(host, int(port))


def _init_ca(a: argparse.Namespace) -> None:
    layout = init_ca(a.ca_dir, organisation=a.organisation, broker_names=a.broker_name, central_name=a.central_name)
    ca = IssuingCa.load(layout.ca_dir)
    with Ledger(layout.ledger) as ledger:
        crl.write_crl(ca, ledger)
    print(f"Fleet CA created in {layout.ca_dir}.")
    print(f"Next: move {layout.root_key.parent} to offline media and delete it here; "
          f"then `python -m provisioning broker-config --ca-dir {layout.ca_dir} --out DIR` for the broker, "
          f"and give central {layout.central_cert}, {layout.central_key} and {layout.bundle}.")


def _new_token(a: argparse.Namespace) -> None:
    ca = IssuingCa.load(a.ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        token = tokens.new_token(ledger, a.device_id, valid_for=timedelta(hours=a.valid_hours),
                                 reserved=frozenset({ca.central_name}))
    print(token)
    print(f"One-time enrolment token for {a.device_id}, valid {a.valid_hours} h (shown once; not stored).",
          file=sys.stderr)
    print(f"Next, at the desk: `python -m provisioning device-keygen --data-dir DATA --device-id {a.device_id}`, "
          "then bring DATA/pki/device.csr and this token to `issue`.", file=sys.stderr)


def _device_keygen(a: argparse.Namespace) -> None:
    # The desk's own policy: PCR 7 and the authorisation value from DATA/tpm-auth.secret (made only if sealing).
    tpm = keys.tpm_for_policy(keys.MODE_FILE if a.no_tpm else "auto", a.tcti, data_dir=a.data_dir)
    pki, mode = device.keygen(a.data_dir, a.device_id, tpm, a.web_name)
    where = (f"sealed to the TPM ({tpm.tcti}, PCR {tpm.policy.pcrs} and an authorisation value)" if tpm
             else "in 0600 files (no TPM: weaker, reported in health)")
    print(f"Keys for {a.device_id} made and kept {where}; request at {pki.csr} (mode: {mode.mode}).")
    web = f" and {pki.web_csr} (the desk UI's HTTPS, for {', '.join(a.web_name)})" if a.web_name else ""
    print(f"Next: send {pki.csr}{web} with the enrolment token to central's `issue`, and register "
          f"{pki.wrap_public} with `python -m central devices register --wrap-key`; the private keys stay here.")


def _issue(a: argparse.Namespace) -> None:
    ca = IssuingCa.load(a.ca_dir)
    csr_pem = a.csr.read_bytes()
    with Ledger(ca.layout.ledger) as ledger:
        token = Path(a.token).read_text().strip() if a.token_file else a.token
        issued = issue.issue_device_certificate(ca, ledger, csr_pem, token, days=a.valid_days,
                                                web_csr_pem=a.web_csr.read_bytes() if a.web_csr else None)
    out = issue.write_bundle(a.out, ca, issued, a.tuf_root)
    print(f"Issued certificate {issued.certificate.serial_number:x} to {issued.device_id}, valid until "
          f"{issued.certificate.not_valid_after_utc:%Y-%m-%d}"
          + (f", and web server certificate {issued.web_certificate.serial_number:x}" if issued.web_certificate
             else "") + f"; bundle in {out}.")
    print(f"Next, at the desk: `python -m provisioning device-install --data-dir DATA --device-id "
          f"{issued.device_id} --bundle {out}`; register its audit key with `python -m central devices register`.")


def _device_install(a: argparse.Namespace) -> None:
    pki = device.install_bundle(a.data_dir, a.device_id, a.bundle)
    print(f"Installed the fleet CA and {a.device_id}'s certificate in {pki.folder}.")
    print(f"Next: in the appliance settings set [mqtt] and [updates] ca_file = \"{pki.ca}\", cert_file = "
          f"\"{pki.cert}\", key_file = \"{pki.key}\""
          + (f", [updates] trusted_root = \"{pki.tuf_root}\"" if pki.tuf_root.exists() else "")
          + (f", [web] cert_file = \"{pki.web_cert}\", key_file = \"{pki.web_key}\"" if pki.web_cert.exists()
             else "")
          + "; then restart the appliance.")


def _server_cert(a: argparse.Namespace) -> None:
    ca = IssuingCa.load(a.ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        cert, key = issue.issue_server_certificate(ca, ledger, a.name, a.out, days=a.valid_days)
    print(f"Web server certificate for {', '.join(a.name)} in {cert}, its key in {key} (0600).")
    print(f"Next: in central's settings set [web] cert_file = \"{cert}\", key_file = \"{key}\", client_ca_file = "
          f"\"{ca.layout.bundle}\"; desks trust it through {ca.layout.bundle} ([updates] ca_file).")


def _broker_config(a: argparse.Namespace) -> None:
    conf = broker.write_broker_dir(a.ca_dir, a.out, a.device_listener, a.central_listener,
                                   owner=None if a.owner == "" else a.owner)
    expires = crl.crl_expires(a.out / "crl.pem")
    print(f"Broker configuration written to {conf}; its CRL is valid until {expires:%Y-%m-%d %H:%M} UTC.")
    print(f"Next: `mosquitto -c {conf}`, and schedule `python -m provisioning crl --ca-dir {a.ca_dir} "
          f"--broker-dir {a.out}` daily: an expired CRL locks out every device and central.")


def _reissue_crl(a: argparse.Namespace, ca: IssuingCa, ledger: Ledger) -> None:
    copies = (a.broker_dir / "crl.pem",) if a.broker_dir else ()
    path = crl.write_crl(ca, ledger, valid_for=timedelta(days=a.valid_days), copies=copies)
    if a.reload_pid:
        crl.reload_broker(a.reload_pid)
        print(f"Broker {a.reload_pid} told to reload the CRL.")
    else:
        print(f"Next: copy {path} to the broker if needed and reload it (SIGHUP / systemctl reload mosquitto).")


def _revoke(a: argparse.Namespace) -> None:
    ca = IssuingCa.load(a.ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        serials = ledger.revoke_device(a.device_id, datetime.now(UTC))
        if not serials and not ledger.certificates(a.device_id):
            raise CaError(f"no certificate was ever issued to {a.device_id}; check the device id.")
        _reissue_crl(a, ca, ledger)
    print(f"Revoked {len(serials)} certificate(s) of {a.device_id}; the broker refuses it on its next connection.")


def _crl(a: argparse.Namespace) -> None:
    ca = IssuingCa.load(a.ca_dir)
    with Ledger(ca.layout.ledger) as ledger:
        _reissue_crl(a, ca, ledger)
    print(f"CRL valid until {crl.crl_expires(CaLayout(a.ca_dir).crl):%Y-%m-%d %H:%M} UTC; refresh it before then.")


def _refresh_broker(a: argparse.Namespace, *, server_certificate: bool) -> str:
    """Refresh the broker's copies and reload it when asked; the sentence saying what is left to do."""
    if not a.broker_dir:
        files = "ca.pem, crl.pem" + (", broker/server.crt and broker/server.key" if server_certificate else "")
        return f"copy {files} from {a.ca_dir} to the broker's folder and reload it (systemctl reload mosquitto)"
    broker.refresh_broker_files(a.ca_dir, a.broker_dir, server_certificate=server_certificate)
    if a.reload_pid:
        crl.reload_broker(a.reload_pid)
        return (f"nothing for the broker (its files in {a.broker_dir} are refreshed and process {a.reload_pid} "
                "reloads them)")
    return f"reload the broker (systemctl reload mosquitto): its files in {a.broker_dir} are refreshed"


def _renew_issuing_ca(a: argparse.Namespace) -> None:
    done = renew.renew_issuing_ca(a.ca_dir, a.root_key)
    layout = CaLayout(a.ca_dir)
    print(f"New issuing CA \"{done.new.subject.rfc4514_string()}\" valid until "
          f"{done.new.not_valid_after_utc:%Y-%m-%d}; new certificates come from it. The old one is kept in "
          f"{done.kept_dir} and stays in {layout.bundle} and "
          f"the CRL until {done.kept.not_valid_after_utc:%Y-%m-%d}: desks enrolled before need nothing.")
    print(f"Next: {_refresh_broker(a, server_certificate=False)}; restart central (it reads {layout.bundle} at "
          f"start); put {a.root_key} back on the offline media; back up {layout.ca_dir}; when convenient, "
          f"`python -m provisioning reissue-server-certs --ca-dir {layout.ca_dir}`.")


def _reissue_server_certs(a: argparse.Namespace) -> None:
    server, central = renew.reissue_server_certificates(a.ca_dir, broker_names=a.broker_name or None,
                                                        days=a.valid_days)
    layout = CaLayout(a.ca_dir)
    print(f"Broker certificate {server.serial_number:x} ({server.subject.rfc4514_string()}) and central's MQTT "
          f"certificate {central.serial_number:x} re-issued with new keys, valid until "
          f"{server.not_valid_after_utc:%Y-%m-%d}, in {layout.server_cert.parent} and {layout.central_cert.parent}.")
    print(f"Next: {_refresh_broker(a, server_certificate=True)}; restart central's ingest and web (they load "
          f"{layout.central_cert} and {layout.central_key} at start; copy them first if central uses copies). "
          "Desks need nothing.")


def _seal_key(a: argparse.Namespace) -> None:
    secret = a.source.read_bytes()
    tpm = keys.open_tpm(a.tcti, allow=not a.no_tpm)
    mode = keys.seal_secret(a.path, secret, tpm)
    if a.remove_source and a.source.resolve() != a.path.resolve():
        a.source.unlink()
    print(f"Stored {a.path} ({keys.fingerprint(secret)}) with protection {mode.mode}"
          + (" (weaker: no TPM)" if mode.weaker else "") + ".")
    print(f"Next: check with `python -m provisioning unseal-key --path {a.path}`"
          + ("" if a.remove_source else f", then delete {a.source} (--remove-source does it)") + ".")


def _unseal_key(a: argparse.Namespace) -> None:
    secret = keys.unseal_secret(a.path, keys.open_tpm(a.tcti))
    print(f"{a.path} opens ({keys.protection(a.path).mode}); fingerprint {keys.fingerprint(secret)}.")


def _key_protection(a: argparse.Namespace) -> None:
    mode = keys.protection(a.path)
    print(f"{a.path}: {mode.mode}" + (" (weaker than a TPM)" if mode.weaker else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m provisioning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init-ca", help="create the offline root, issuing CA, broker and central certificates")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--organisation", required=True, help="e.g. the force's name")
    p.add_argument("--broker-name", action="append", required=True,
                   help="host name or IP devices use for the broker (repeat for several)")
    p.add_argument("--central-name", default="central", help="CN of central's client certificate")
    p.set_defaults(run=_init_ca)

    p = sub.add_parser("new-token", help="a one-time enrolment token for one device id")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--device-id", required=True)
    p.add_argument("--valid-hours", type=int, default=24)
    p.set_defaults(run=_new_token)

    p = sub.add_parser("device-keygen", help="(at the desk) make the device key and certificate request")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--device-id", required=True)
    p.add_argument("--tcti", help="TPM to use (default: TPM2TOOLS_TCTI, then /dev/tpmrm0)")
    p.add_argument("--no-tpm", action="store_true", help="keep the key in a 0600 file even if a TPM exists")
    p.add_argument("--web-name", action="append", default=[], help="a host name or address people use for the "
                   "desk UI: also make the desk web server's key and request (repeat for several)")
    p.set_defaults(run=_device_keygen)

    p = sub.add_parser("issue", help="issue a device certificate against its request and enrolment token")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--csr", type=Path, required=True)
    p.add_argument("--token", required=True, help="the token, or a file holding it with --token-file")
    p.add_argument("--token-file", action="store_true", help="--token names a file")
    p.add_argument("--web-csr", type=Path, help="the desk's web.csr: also issue its HTTPS server certificate")
    p.add_argument("--tuf-root", type=Path, help="central's 1.root.json, the desk's trust anchor for updates")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to carry to the desk")
    p.add_argument("--valid-days", type=int, default=issue.DEVICE_DAYS)
    p.set_defaults(run=_issue)

    p = sub.add_parser("device-install", help="(at the desk) check and install central's bundle")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--device-id", required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.set_defaults(run=_device_install)

    p = sub.add_parser("server-cert", help="a web server certificate (and key) for central's HTTPS")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--name", action="append", required=True, help="host name or address (repeat for several)")
    p.add_argument("--out", type=Path, required=True, help="directory for server.crt and server.key")
    p.add_argument("--valid-days", type=int, default=SERVICE_DAYS)
    p.set_defaults(run=_server_cert)

    p = sub.add_parser("broker-config", help="write Mosquitto's config, ACL, certificates and CRL")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device-listener", type=_listener, default=broker.Listener("0.0.0.0", 8883))
    p.add_argument("--central-listener", type=_listener, default=broker.Listener("127.0.0.1", 8884))
    p.add_argument("--owner", default="mosquitto", help="user the broker runs as ('' to leave ownership)")
    p.set_defaults(run=_broker_config)

    for name, run, help_text in (("revoke", _revoke, "revoke every certificate of a device and re-sign the CRL"),
                                 ("crl", _crl, "re-sign the CRL (schedule daily: an expired CRL locks out all)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--ca-dir", type=Path, required=True)
        if name == "revoke":
            p.add_argument("--device-id", required=True)
        p.add_argument("--broker-dir", type=Path, help="also refresh the broker's copy of the CRL")
        p.add_argument("--reload-pid", type=int, help="send the broker process SIGHUP to reload it")
        p.add_argument("--valid-days", type=int, default=crl.DEFAULT_VALIDITY.days)
        p.set_defaults(run=run)

    p = sub.add_parser("renew-issuing-ca", help="(with the offline root key) a new issuing CA; the old one stays "
                       "trusted for the desks it enrolled")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--root-key", type=Path, required=True, help="the offline root's root.key (offline media)")
    p.add_argument("--broker-dir", type=Path, help="also refresh the broker's ca.pem and CRL")
    p.add_argument("--reload-pid", type=int, help="send the broker process SIGHUP to reload them")
    p.set_defaults(run=_renew_issuing_ca)

    p = sub.add_parser("reissue-server-certs", help="new keys and certificates for the broker and central's MQTT "
                       "client, same names, new expiry")
    p.add_argument("--ca-dir", type=Path, required=True)
    p.add_argument("--broker-name", action="append", default=[],
                   help="host name or IP devices use for the broker (default: the current certificate's names)")
    p.add_argument("--valid-days", type=int, default=SERVICE_DAYS)
    p.add_argument("--broker-dir", type=Path, help="also copy the broker's new key pair, ca.pem and CRL there")
    p.add_argument("--reload-pid", type=int, help="send the broker process SIGHUP to load them")
    p.set_defaults(run=_reissue_server_certs)

    p = sub.add_parser("seal-key", help="(at the desk) seal a secret to the TPM, or keep it in a 0600 file")
    p.add_argument("--path", type=Path, required=True, help="the secret's name, e.g. DATA/device.key")
    p.add_argument("--from", dest="source", type=Path, required=True, help="file holding the secret now")
    p.add_argument("--remove-source", action="store_true")
    p.add_argument("--tcti")
    p.add_argument("--no-tpm", action="store_true")
    p.set_defaults(run=_seal_key)

    p = sub.add_parser("unseal-key", help="(at the desk) check a stored secret opens; prints its fingerprint")
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--tcti")
    p.set_defaults(run=_unseal_key)

    p = sub.add_parser("key-protection", help="how a secret is protected (tpm or file)")
    p.add_argument("--path", type=Path, required=True)
    p.set_defaults(run=_key_protection)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CustodyRfrError as e:
        print(f"provisioning: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"provisioning: {e.filename} does not exist.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
