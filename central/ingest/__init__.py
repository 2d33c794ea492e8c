"""Getting events from the broker into central's stores.

``central.ingest.mqtt`` holds central's topic table over the shared connection (``transport.mqtt``, the
only paho importer); everything else sees the ingest through ``central.ingest.status.IngestStatus``.
"""
