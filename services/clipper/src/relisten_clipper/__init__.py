"""relisten clipper service."""
