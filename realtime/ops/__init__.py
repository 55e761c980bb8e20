"""Operations: metrics, probes, logs, garbage-collector tuning."""
