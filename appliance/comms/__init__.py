"""The appliance's links to central. Only ``comms.mqtt`` imports paho."""
