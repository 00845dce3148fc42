"""Each benchmark's own file formats: record builders and validators.

The validators read a file the way the benchmark's official tool does (the same keys,
types and id handling), so a file they accept is one the official tool reads unchanged.
"""
