"""Errors and warnings a user can act on, importable without torch.

The command line prints a ``UserError`` as one line (``secure-fal COMMAND: error: MESSAGE``, exit status 1)
instead of a traceback, and a ``UserWarning`` raised while a command runs as ``secure-fal COMMAND: warning:
MESSAGE``. Subclasses also derive from the builtin that describes them (ValueError, FileNotFoundError, ...), so
library callers can catch either.
"""


class UserError(Exception):
    """A problem the user fixes by changing a setting, a flag or a file; the message says which and how."""
