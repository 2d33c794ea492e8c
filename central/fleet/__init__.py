"""The fleet as central sees it: desks' heartbeats, their status flags, revocation and the signed wipe."""
