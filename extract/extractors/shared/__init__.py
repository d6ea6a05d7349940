"""Code shared by several extractors; every extraction stage depends on this folder."""
