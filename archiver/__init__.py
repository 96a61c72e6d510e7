"""The archiver service: face events in, throttled entries to InfluxDB and face crops to disk."""
