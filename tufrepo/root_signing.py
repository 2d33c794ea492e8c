"""The next root of a repository, signed with the offline root keys: how online keys are rotated and root renewed.

A client trusts a new root only if a threshold of the keys of the root it already
holds signed it, and a threshold of the new root's own keys too (TUF spec, 5.3.4);
it then walks ``1.root.json``, ``2.root.json``... from the root it was shipped with.
So every change of trust is a new root version written as ``N.root.json``:

* rotating an online role's key names only the new key for that role, and the old key
  signs nothing a client accepts from then on;
* re-signing root gives it a new expiry, and may replace root keys, in which case the
  new root is signed by the old keys still held and the new ones.

The offline root keys are read from the folder their holders bring (``root-<n>.pem``
as ``init`` wrote them). This module only builds and signs; the repository writes
the files and re-signs what depends on the changed keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root

from core import signing_keys
from core.errors import CustodyRfrError
from core.signing_keys import SigningKeyError

ErrorType = Callable[[str], CustodyRfrError]


@dataclass(frozen=True)
class RootKey:
    """One offline root key found in the holders' folder, with the file it came from."""

    path: Path
    signer: CryptoSigner

    @property
    def keyid(self) -> str:
        return str(self.signer.public_key.keyid)


def load_root_keys(folder: Path, root: Root, error: ErrorType) -> dict[str, RootKey]:
    """The keys in ``folder`` that ``root`` trusts to sign the next root, by key id; at least its threshold.

    Keys root does not trust (another repository's, or ones already replaced) are left out rather than
    refused, so a folder holding retired keys still works; too few trusted ones is an error that says how many.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise error(f"The offline root keys folder {folder} does not exist: give --root-keys-dir the folder "
                    f"of root keys that init wrote (root-1.pem ...), brought back from offline storage.")
    trusted = set(root.roles[Root.type].keyids)
    threshold = root.roles[Root.type].threshold
    found = {}
    for path in sorted(folder.glob("*.pem")):
        try:
            key = RootKey(path, signing_keys.load_signer(path))
        except SigningKeyError as e:
            raise error(f"{e} Every .pem file in {folder} should be a root key as init wrote it.") from e
        if key.keyid in trusted:
            found[key.keyid] = key
    if len(found) < threshold:
        raise error(f"{folder} holds {len(found)} of the root keys this repository's root trusts, but "
                    f"{threshold} of its {len(trusted)} must sign a new root. Bring the folder of offline root "
                    f"keys (or enough of their holders' key files) for this repository.")
    return found


def next_root(current: Metadata[Root], expires: datetime) -> Metadata[Root]:
    """An unsigned copy of ``current`` as the next version, valid until ``expires``."""
    root: Metadata[Root] = Metadata[Root].from_bytes(current.to_bytes())
    root.signed.version += 1
    root.signed.expires = expires
    root.signatures.clear()
    return root


def replace_online_key(root: Root, role: str, new: CryptoSigner) -> list[str]:
    """Make ``new`` the only key of ``role``; the key ids it replaces."""
    old = list(root.roles[role].keyids)
    for keyid in old:
        root.revoke_key(keyid, role)
    root.add_key(new.public_key, role)
    return old


def resolve_root_key_ids(root: Root, wanted: Sequence[str], error: ErrorType) -> list[str]:
    """The full root key ids that ``wanted`` names (a full id, or a prefix of at least 8 that names just one)."""
    trusted = list(root.roles[Root.type].keyids)
    resolved: list[str] = []
    for text in wanted:
        text = text.strip().lower()
        matches = [k for k in trusted if k == text or (len(text) >= 8 and k.startswith(text))]
        if len(matches) != 1:
            raise error(f"{text!r} is not {'exactly one of ' if matches else 'one of '}the root key ids this "
                        f"repository's root trusts ({', '.join(trusted)}); `status` lists them.")
        if matches[0] not in resolved:
            resolved.append(matches[0])
    return resolved


def replace_root_keys(root: Root, keyids: Sequence[str]) -> list[CryptoSigner]:
    """A new root key in place of each of ``keyids`` (the threshold stays); the new keys' signers."""
    signers = []
    for keyid in keyids:
        signer = CryptoSigner.generate_ed25519()
        root.revoke_key(keyid, Root.type)
        root.add_key(signer.public_key, Root.type)
        signers.append(signer)
    return signers


def sign_root(root: Metadata[Root], previous: Root, signers: Iterable[CryptoSigner], error: ErrorType) -> None:
    """Sign with every given key the previous or the new root trusts; refuse unless a client would accept it.

    The check is python-tuf's own (``Root.get_root_verification_result``): a threshold of the previous
    root's keys and a threshold of the new root's keys, which is what a client holding ``previous`` verifies.
    """
    wanted = set(previous.roles[Root.type].keyids) | set(root.signed.roles[Root.type].keyids)
    for signer in signers:
        if signer.public_key.keyid in wanted:
            root.sign(signer, append=True)
    result = root.signed.get_root_verification_result(previous, root.signed_bytes, root.signatures)
    if not result.verified:
        raise error(f"Root version {root.signed.version} would have {len(result.first.signed)} of the "
                    f"{result.first.threshold} signatures the current root needs and {len(result.second.signed)} "
                    f"of the {result.second.threshold} it needs itself; nothing was written.")
