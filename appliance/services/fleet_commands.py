"""Central's signed commands to this desk arrive on one topic; each goes to the service that carries it out.

``wipe`` (``wipe.WipeService``), ``resend`` (``resend.ResendService``) and ``rekey`` (``rekey.RekeyService``:
central's fleet-command key rotated). Anything else, or anything that does not parse, goes to the wipe service,
which refuses it and records the refusal in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from core.errors import WireFormatError
from core.fleet import FleetCommand

logger = logging.getLogger(__name__)


def record_refusal(audit: Any, refused: list[str], what: str, error: Exception) -> None:
    """A refused command from central (forged, stale, replayed, for another desk): kept for the service's
    ``refused`` list, logged, and audited as ``request_refused`` / ``fleet_command_refused``. Changes nothing else."""
    reason = str(error)[:200]
    refused.append(reason)
    logger.warning("refused a %s: %s", what, reason)
    audit.record("request_refused", "central", "fleet_command_refused", reason=reason)


def command_router(wipe: Callable[[bytes], object], resend: Callable[[bytes], object],
                   rekey: Callable[[bytes], object] | None = None) -> Callable[[bytes], object]:
    """The fleet-command topic's handler."""
    routes = {"resend": resend, **({"rekey": rekey} if rekey is not None else {})}

    def route(payload: bytes) -> object:
        try:
            command = FleetCommand.from_bytes(payload)
        except WireFormatError:
            return wipe(payload)  # refused and recorded there
        return routes.get(command.command, wipe)(payload)

    return route
