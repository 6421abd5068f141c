"""relisten: the command line and the local supervisor."""
