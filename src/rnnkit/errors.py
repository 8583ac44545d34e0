"""The one exception type for problems a user can fix (bad input, missing files, bad flags)."""


class RnnkitError(Exception):
    """A problem with the user's input. The CLI prints its message as one line and exits 2.

    Messages name the problem and the fix, e.g. "--temperature must be > 0, got 0; use a value
    such as 0.8 (or --argmax for greedy decoding)".
    """


class UnseenTokens(RnnkitError):
    """Data holds characters (or words, labels) that a trained model's vocabulary lacks.

    ``source`` names the data, ``unseen`` lists what is missing; the message says what to do
    about it in the usual case (a prompt or an evaluation), and --init-from words its own."""

    def __init__(self, source: str, unseen: list[str], message: str):
        super().__init__(message)
        self.source, self.unseen = source, unseen
