"""The one exception type that entry points turn into a clean message and a non-zero exit.

Library code raises `RadllmError` for anything a user can fix (a bad path, a wrong key, a corrupt
file): the message must name the file/key/value and say what was expected. Bugs stay ordinary
exceptions with tracebacks.
"""


class RadllmError(Exception):
    """A user-facing error: printed without a traceback by the CLI, exit status 2."""
