"""The MQTT link the desk and central share, outside both: the only package in the tree that imports paho.

``transport.settings`` says where the broker is and with which certificate; ``transport.mqtt`` holds
the connection (connect, back-off, mutual TLS, persistent session, subscriptions, clean shutdown).
The desk (``appliance.comms.mqtt``) and central (``central.ingest.mqtt``) keep only their topic
tables and what they do between network turns.
"""
