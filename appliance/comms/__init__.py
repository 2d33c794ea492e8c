"""The appliance's links to central. ``comms.mqtt`` holds the MQTT one; the connection itself is ``transport.mqtt``."""
