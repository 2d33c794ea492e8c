"""The transport's tests use the provisioning tests' fleet CA and TLS broker, started the same way."""

from tests.provisioning.conftest import fleet_broker  # noqa: F401 (a fixture: one fleet CA and TLS broker per module)
