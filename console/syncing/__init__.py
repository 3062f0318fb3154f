"""Sources that stay in sync: folders, Git repositories and web sites re-indexed incrementally by the worker.

A source (console.models.Source) names a kind of connector (ragcore.connectors) and its settings; a sync
(`runs`) lists the origin's items, indexes the new and changed ones through the same path as uploads,
and removes the gone ones. `service` is what the console and the command call; `schedule` is how the
worker finds due sources and resumes syncs whose worker died.
"""
