"""relisten merger service."""
