"""Release tooling run at central: build appliance bundles and publish them in the release TUF repository."""
