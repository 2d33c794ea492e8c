"""The fleet as central sees it: the device registry and revocations, the desks' heartbeats, their status
flags, and revoking a desk with a signed wipe. (Heartbeats arrive through ``central.ingest.health``.)"""
