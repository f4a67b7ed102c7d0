"""What embuffer tells people and monitoring: status, the console, the outage report,
the registration check and the Prometheus metrics."""
