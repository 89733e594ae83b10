"""Shared plumbing: atomic writes, devices, threads, progress, the config coercer, image files."""
