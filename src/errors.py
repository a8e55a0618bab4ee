"""The error type for problems the user can fix (a missing file, a wrong setting, an unusable
checkpoint). Entry scripts print its message as one line and exit with status 1; anything else is a
bug and keeps its traceback."""


class UserError(Exception):
    """Bad input or setting, with a one-line message naming the file, key or record at fault."""
