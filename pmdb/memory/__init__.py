"""Address spaces, stacked like layers; every read is whole or raises FaultError."""
