"""The `labq` command."""
