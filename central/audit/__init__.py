"""Audit events received from appliances: where they are kept and how they are read back."""
