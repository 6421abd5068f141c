"""relisten notifier service."""
