"""Route modules: writes, reads, credentials, operations."""
