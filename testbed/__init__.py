"""What the tests and the benchmarks run against: real local services and a stand-in device.

A Mosquitto with its own config on a free port (``mosquitto``), a throw-away PostgreSQL cluster on
a unix socket (``postgres``), and a device's signed audit chain built in memory (``chain_writer``);
``ports`` and ``processes`` find them a port and stop them.
Both ``tests/`` and ``bench/`` import it, so a benchmark never reaches into the test suite. No
product imports it, and it is not part of the wheel a desk installs.
"""
