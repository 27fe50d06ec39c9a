"""Periodic services: promote due jobs (every worker); rescue and prune (the leader only)."""
