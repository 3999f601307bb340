"""Method-specific heads on top of any backbone feature (one module per head)."""
