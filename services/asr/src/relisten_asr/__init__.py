"""relisten asr service."""
