"""The trading domain: pure Python and numpy, no I/O and no vendor SDKs."""
