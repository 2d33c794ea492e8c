"""What the desk does, independent of how it is shown: search, audit."""
