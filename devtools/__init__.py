"""Helpers for running the system on one machine: the embedded database, the local launcher."""
