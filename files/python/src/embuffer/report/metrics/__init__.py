"""The Prometheus exporter: journal counters and gauges, host probes, HTTP/textfile."""
