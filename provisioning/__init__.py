"""Fleet provisioning: the enrolment command line and the fleet CA (PKI, ledger, enrolment tokens, broker config).

A library first, with a thin command line (``python -m provisioning``). Central's RFR team
runs the CA-side commands on the enrolment host; a technician runs the device-side ones on
the desk. The device's key code that the products run lives in ``devicekeys``; this package
uses it and imports neither product.
"""
