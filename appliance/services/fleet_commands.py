"""Central's signed commands to this desk arrive on one topic; each goes to the service that carries it out.

``wipe`` (``wipe.WipeService``), ``resend`` (``resend.ResendService``) and ``rekey`` (``rekey.RekeyService``:
central's fleet-command key rotated). Anything else, or anything that does not parse, goes to the wipe service,
which refuses it and records the refusal in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import WireFormatError
from core.fleet import FleetCommand


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
