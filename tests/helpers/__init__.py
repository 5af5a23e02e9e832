"""Shared builders for the tests: fake sysfs trees, ELF and kdump writers, records, references.

Test modules import from here (``from helpers import fakesysfs as F``), never from each other.
"""
