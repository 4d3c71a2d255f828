"""One module per command; each exposes `run(args, ui) -> exit code`."""
