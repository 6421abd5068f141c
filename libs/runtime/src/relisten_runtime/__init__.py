"""Wiring every relisten service shares: settings, the NATS connection and buckets, the embedded
nats-server, and the explicit acknowledgement policy of the workers."""
