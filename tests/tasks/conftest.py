"""Fixtures for the task layer: SuperGLUE paths and the private `$DPTUNE_CACHE` are in
tests/conftest.py."""
