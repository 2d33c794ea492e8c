"""Enrolment: building reference-library snapshots from a folder of custody images.

Not to be confused with the top-level ``library`` package, which defines the
snapshot format both central and the appliance use; this package is central's
tooling that fills it (``python -m central.enrolment enrol``).
"""
