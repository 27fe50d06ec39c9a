"""Periodic services: promote due jobs and rescue expired leases (every worker); prune history
and vacuum the hot table (the elected leader only)."""
