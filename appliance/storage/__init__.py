"""What the appliance keeps on its own disk, all of it inside SQLCipher."""
