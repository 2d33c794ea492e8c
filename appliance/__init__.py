"""The custody-desk appliance: probe photo in, ranked potential matches out, every action audited."""
