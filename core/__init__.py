"""Shared, pure models used by both the appliance and central.

Like python-tuf's ``api`` package this imports no web, broker, inference or
database library, so both sides agree on wire formats without depending on
each other's runtime.
"""
