"""The hash-chained audit trail: arrives with the audit issue."""
