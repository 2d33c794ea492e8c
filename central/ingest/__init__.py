"""Getting events from the broker into central's stores.

Only ``central.ingest.mqtt`` imports paho; everything else sees the ingest
through ``central.ingest.status.IngestStatus``.
"""
