"""Test and benchmark material shared by tests/ and bench/: real servers on free ports
(servers.py), the whole platform (platform.py), study helpers (studies.py), a trial model
logged as a worker logs one (models.py), a dataset version record (datasets.py), the
headless browser (browser.py), tables of known structure (tables.py) and the reference
models they are scored against (reference.py)."""
