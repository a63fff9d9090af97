"""Stable 64-bit hashes (XXH64), from the native core.

Stored in the database (device keys, identifier hashes), so they never change
between versions: tests/test_hashing.py pins them to the XXH64 reference values.
"""

from unmo._native import hash_strings, xxh64

__all__ = ["hash_strings", "xxh64"]
