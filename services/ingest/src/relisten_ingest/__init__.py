"""relisten ingest service."""
