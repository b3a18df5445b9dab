"""Property-based tests of hostile input (the private `$DPTUNE_CACHE`: tests/conftest.py)."""
