"""The one exception type for problems a user can fix (bad input, missing files, bad flags)."""


class RnnkitError(Exception):
    """A problem with the user's input. The CLI prints its message as one line and exits 2.

    Messages name the problem and the fix, e.g. "--temperature must be > 0, got 0; use a value
    such as 0.8 (or --argmax for greedy decoding)".
    """
