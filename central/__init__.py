"""The central server: receives audit events from every custody-desk appliance and
builds the reference-library snapshots the appliances search.

Central never imports the appliance (an import-linter contract keeps it so); both
sides share only ``core`` wire formats and the ``library`` snapshot format.
"""
