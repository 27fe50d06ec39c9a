"""INTERNAL: the one seam to the database. Nothing here imports worker, maintenance or CLI code."""
