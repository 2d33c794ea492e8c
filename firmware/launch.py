"""``python -m firmware.launch --ready-url URL [--ca-file PEM] -- CMD...``: run the appliance under systemd's notify
and watchdog.

The appliance itself does not speak the sd_notify protocol, so this small
parent does: it starts ``CMD``, tells systemd READY=1 once ``URL`` answers,
then sends WATCHDOG=1 every half ``WATCHDOG_USEC`` for as long as the URL
keeps answering. If the appliance hangs, the pings stop and systemd kills
and restarts the unit (WatchdogSec); if it exits, so does this, with its
status. Only the standard library: it must work whatever release is in the slot.

The desk serves HTTPS only, with its certificate from the fleet CA: ``--ca-file``
(the desk's pki/ca.pem) is what the certificate must chain to. The host name is
not checked: this is a liveness check over the loopback, and the certificate
names what people type to reach the desk.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request


def sd_notify(message: str) -> bool:
    """Send one datagram to $NOTIFY_SOCKET (abstract sockets start with '@'); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def answers(url: str, timeout: float, context: ssl.SSLContext | None = None) -> bool:
    """Any HTTP answer (even 401/404) means the web server's threads are alive."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware.launch", description=__doc__)
    parser.add_argument("--ready-url", required=True)
    parser.add_argument("--ca-file", help="CA bundle the desk's HTTPS certificate chains to (pki/ca.pem)")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    context = None
    if args.ca_file:
        context = ssl.create_default_context(cafile=args.ca_file)
        context.check_hostname = False
    child = subprocess.Popen(command)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    interval = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6 or 10.0
    deadline = time.monotonic() + args.start_timeout
    ready = False
    while child.poll() is None:
        if answers(args.ready_url, timeout=min(interval, 5.0), context=context):
            sd_notify("WATCHDOG=1" if ready else f"READY=1\nMAINPID={os.getpid()}")
            ready = True
        elif not ready and time.monotonic() > deadline:
            print(f"launch: {args.ready_url} did not answer within {args.start_timeout:.0f} s; stopping.",
                  file=sys.stderr)
            child.terminate()
            break
        time.sleep(interval if ready else 0.5)
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
