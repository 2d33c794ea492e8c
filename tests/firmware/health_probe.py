"""Stand-in health check run inside a slot: the slot's own appliance wheel imports, and the version is not on a
list of versions the test wants to fail (argv: version, slot dir, fail-list file)."""

import sys
from pathlib import Path

version, slot, fail_list = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import appliance  # noqa: E402

if not Path(appliance.__file__).resolve().is_relative_to(slot.resolve()):
    sys.exit(f"appliance imported from {appliance.__file__}, not from the slot {slot}")
if fail_list.exists() and version in fail_list.read_text().split():
    sys.exit(f"probe search failed for {version}")
print("healthy", version)
