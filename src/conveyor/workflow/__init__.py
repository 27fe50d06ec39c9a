"""Durable workflows: a run is a job whose handler replays recorded steps (docs/workflows.md).

definition.py holds `Workflow` (what @app.workflow returns: start a run), context.py the
`WorkflowContext` a workflow function receives, engine.py the worker's side (replay a run,
record, park), driver.py the one place that tells sync from async. Nothing is imported here, so
importing a submodule loads only what it needs.
"""
