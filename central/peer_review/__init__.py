"""Peer review at central: requests from the desks, the reviewers' decisions, outcomes back to the desks.

``store`` keeps requests, decisions and a log of who did what in the same
database as the audit events; ``ingest`` checks requests arriving over MQTT
(called by ``central.ingest.mqtt``, which also sends the decided outcomes);
``central.web.peer_review`` is the reviewers' page.
"""
