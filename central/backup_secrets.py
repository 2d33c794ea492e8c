"""Every secret central's settings name, and what a backup does with it: sealed into ``secrets.enc``, or not, and why.

A restored central must carry on as the old one did: sign acks the desks accept (the fleet-command key),
open the peer review probes desks seal to it (the review key), publish further versions of each library
(its lineage key, and the retired keys a re-key left), sign TUF metadata (the online role keys), issue and
revoke certificates (the fleet CA), speak TLS to browsers and to the broker under the names desks trust.
Each of those is a file or folder a setting names, so the list here is read from the settings, not kept
by hand: a backup seals what the old settings name and a restore writes each to the path the *new*
settings give the same setting, refusing when the new settings name no place for something the backup
holds. ``NOT_BACKED_UP`` is the other half: each secret a backup deliberately leaves out, with the reason
(``tests/central/test_backup_secrets.py`` checks every path-valued setting is in one list or the other).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from central.settings import CentralSettings

#: Sibling files kept with a key file: its public half; a lineage key's retired keys and an unfinished re-key.
PUBLIC_HALF = (".pub",)
LINEAGE_SIBLINGS = (".retired-*", ".next")
#: The fleet-command key's: an unfinished rotation's new key (desks may already trust it) and the retired keys
#: (the one desks whose rekey the broker refused still trust; central.fleet.rotate).
COMMAND_KEY_SIBLINGS = (*PUBLIC_HALF, *LINEAGE_SIBLINGS)


@dataclass(frozen=True)
class SecretPlace:
    """One secret as a setting names it: ``setting`` is stable between the old and the new settings file."""

    setting: str
    path: Path
    is_dir: bool = False
    siblings: tuple[str, ...] = ()  # glob suffixes after the file's own name

    def sibling_files(self) -> list[Path]:
        """The key's companions that exist now (``fleet-command.pem.pub``, ``national.key.retired-ab12...``)."""
        if self.is_dir or not self.path.parent.is_dir():
            return []
        found = {p for pattern in self.siblings for p in self.path.parent.glob(self.path.name + pattern)}
        return sorted(p for p in found if p.is_file())


#: Secrets (or settings near them) a backup leaves out on purpose, and why: docs/operations.md repeats this.
NOT_BACKED_UP: dict[str, str] = {
    "web.secret_key": "a string in the settings file or RFR_CENTRAL__WEB__SECRET_KEY, not a file; it signs only "
                      "CSRF tokens and the sign-in form's cookie, so a new server takes a new one (forms open at "
                      "the moment of the switch must be sent again; sessions are rows in the database and survive)",
    "database": "the database URL's password belongs to the new cluster's role, made when the cluster is",
    "metrics.token_sha256": "a digest, not a secret: the token itself is in Prometheus's credentials file",
    "publish.root_keys": "the offline TUF root keys never live on central (`central.publish init` writes them to "
                         "a folder to be moved to offline media): keep two copies of that media apart",
    "fleet.broker_dir": "the broker's copy of the CA bundle, its certificate and key (also in the CA folder) and "
                        "the CRL: made again from the restored CA with `python -m provisioning broker-config`",
    "fleet.broker_pid_file": "not a secret",
    "web.client_ca_file": "public (the fleet CA bundle); inside the CA folder, which is sealed",
    "web.crl_file": "public, and re-signed daily from the CA folder (`python -m provisioning crl`)",
    "mqtt.ca_file": "public (the fleet CA bundle)",
    "data_dir": "holds the SQLite database (backed up through SQLite's backup API) and the probe vault",
    "peer_review.probe_dir": "peer review probes are personal data kept only until the review is answered, each "
                             "under its own key, and destroyed by overwriting: a copy in a backup would outlive "
                             "that. After a restore a pending review shows no probe image",
    "reports.libraries.path": "library snapshots are encrypted files, not keys: the published ones are in the "
                              "backup's tuf-repo/targets; copy others back from the enrolment team's builds",
    "peer_review.libraries.path": "as reports.libraries.path",
}


def secret_places(settings: CentralSettings) -> list[SecretPlace]:
    """The secrets ``settings`` name that a backup seals, in a fixed order (folders before the files in them)."""
    places: list[SecretPlace] = []
    if settings.publish.repo_dir is not None:
        places.append(SecretPlace("publish.repo_dir/keys", settings.publish.repo_dir / "keys", is_dir=True))
    if settings.fleet.ca_dir is not None:
        places.append(SecretPlace("fleet.ca_dir", settings.fleet.ca_dir, is_dir=True))
    if settings.fleet.command_key is not None:
        places.append(SecretPlace("fleet.command_key", settings.fleet.command_key, siblings=COMMAND_KEY_SIBLINGS))
    if settings.peer_review.review_key is not None:
        places.append(SecretPlace("peer_review.review_key", settings.peer_review.review_key, siblings=PUBLIC_HALF))
    lineage = [(f"publish.lineage_keys.{i}", path) for i, path in enumerate(settings.publish.lineage_keys)]
    lineage += [(f"reports.libraries.{i}.key_file", lib.key_file) for i, lib in enumerate(settings.reports.libraries)]
    lineage += [(f"peer_review.libraries.{i}.key_file", lib.key_file)
                for i, lib in enumerate(settings.peer_review.libraries)]
    places += [SecretPlace(name, path, siblings=LINEAGE_SIBLINGS) for name, path in lineage]
    for section in ("web", "mqtt"):  # TLS: central's HTTPS certificate, its broker client certificate
        tls = getattr(settings, section)
        for field in ("cert_file", "key_file"):
            if getattr(tls, field) is not None:
                places.append(SecretPlace(f"{section}.{field}", getattr(tls, field)))
    return places

