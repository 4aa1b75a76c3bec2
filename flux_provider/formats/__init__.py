"""File formats exchanged between flux steps."""
