"""relisten corrector service."""
