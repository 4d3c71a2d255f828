"""The shared remote cache: a content-addressed store on any fsspec URL that many
machines read and (when trusted) write, plus what rides on it: CI shards and Dask.

Nothing here imports fsspec, s3fs or distributed at module level: a build with no
remote configured must not pay for them (or need them installed).
"""
