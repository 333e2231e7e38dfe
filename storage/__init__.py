"""SQLite storage for prefloop: schema, migrations, named queries, import and export.

This package never imports torch, so the CLI and the trainer's data snapshot stay light.
"""
