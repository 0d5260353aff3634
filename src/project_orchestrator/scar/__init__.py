"""scar package."""
