"""Builds on a Dask cluster: `schedule` submits the plan's stages, `worker` runs one on a
worker, `bundle` ships the recipe's inputs. The shared cache they meet in is `buildsys.remote`.

Nothing here imports distributed at module level: a local build must not pay for it.
"""
