"""The one exception type users see: a message naming the file and the fix."""


class StemforgeError(Exception):
    """An error the user can cause and fix (bad file, bad config, missing checkpoint)."""
