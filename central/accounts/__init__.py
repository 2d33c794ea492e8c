"""Central's own accounts: who may sign in to the RFR team's web interface, and with which roles."""
