"""``python -m central serve --config FILE``: the audit ingest and the web interface.

Werkzeug's server is enough for a handful of RFR staff on the management network;
a production WSGI server can replace it without touching the app.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from central.audit.store import AuditStore
from central.ingest.mqtt import AuditIngest
from central.settings import load
from central.web import DB_NAME, create_app
from core.errors import CustodyRfrError

logger = logging.getLogger("central")

_CONNECT_WAIT_S = 10.0


def _serve(config: Path) -> int:
    settings = load(config)
    store = AuditStore(settings.data_dir / DB_NAME)
    ingest = AuditIngest(settings.mqtt, store)
    ingest.start()
    if not ingest.wait_connected(_CONNECT_WAIT_S):
        # Keep going: paho keeps retrying, the broker queues events meanwhile, /healthz says so.
        logger.warning("not yet connected to broker %s:%s; still trying",
                       settings.mqtt.host, settings.mqtt.port)
    app = create_app(settings, ingest=ingest)
    url = f"http://{settings.web.host}:{settings.web.port}/"
    print(f"central: audit ingest from {settings.mqtt.host}:{settings.mqtt.port}; web interface at {url}",
          flush=True)
    # A service manager stops us with SIGTERM: leave through ``finally`` so the broker session closes cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        app.run(host=settings.web.host, port=settings.web.port, threaded=True, use_reloader=False)
    finally:
        ingest.stop()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m central", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="receive audit events and serve the web interface")
    serve.add_argument("--config", type=Path, required=True, help="central settings TOML file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return _serve(args.config)
    except CustodyRfrError as e:
        print(f"central: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
