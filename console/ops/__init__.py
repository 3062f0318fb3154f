"""Operations: health, metrics, logs, the request middleware and backups."""
