"""What became of a stage in a build: the words the build prints and writes to JSON."""

from __future__ import annotations

from enum import StrEnum


class StageOutcome(StrEnum):
    """A StrEnum so each outcome is its word wherever it is printed, compared or serialised.

    In the order the build's summary line counts them.
    """

    RAN = "ran"
    RESTORED = "restored"  # from the local cache, by key
    RESTORED_REMOTE = "restored (remote)"
    UP_TO_DATE = "up-to-date"
    FAILED = "failed"
    SKIPPED = "skipped"  # an input stage failed; as an outcome on the cluster, else an error type
