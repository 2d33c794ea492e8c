"""Fleet provisioning: the device PKI, enrolment tokens, broker configuration and key protection.

A library first, with a thin command line (``python -m provisioning``). Central's RFR team
runs the CA-side commands on the enrolment host; a technician runs the device-side ones on
the desk. Both products may import this package; it imports neither of them.
"""
