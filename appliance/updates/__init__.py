"""Library updates for the desk, python-tuf ngclient style.

``trust`` decides (pure, no I/O), ``fetcher`` moves bytes (urllib, resume,
size cap), ``updater`` orchestrates: TUF refresh, choice, download, install,
atomic swap, audit.
"""
