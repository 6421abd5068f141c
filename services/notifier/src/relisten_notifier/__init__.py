"""relisten notifier service: on job.merged / job.failed, a Discord embed and a signed job callback."""
