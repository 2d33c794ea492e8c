"""The desk's update agent: verified A/B installs of appliance releases with automatic rollback."""
