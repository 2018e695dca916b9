"""The one exception type that salmap raises for bad input."""


class SalmapError(ValueError):
    """Bad input or an unusable model: the message is one line that says what to do.

    The command line prints the message on stderr and exits with code 2.
    """
