"""Drift (Evidently) and fairness (fairlearn) monitors: arrive with the monitoring issue."""
