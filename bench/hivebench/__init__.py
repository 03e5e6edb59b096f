"""The Hive benchmark driver (see bench/run)."""
