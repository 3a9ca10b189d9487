"""Test and benchmark material shared by tests/ and bench/: tables of known structure."""
