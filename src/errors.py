"""The error type for problems the user can fix (a missing file, a wrong setting, an unusable
checkpoint). Entry scripts print its message as one line and exit with status 1; anything else is a
bug and keeps its traceback."""
import sys


class UserError(Exception):
    """Bad input or setting, with a one-line message naming the file, key or record at fault."""


def exit_status(action, *args):
    """Run ``action(*args)`` for an entry script: 0 when it returns, 1 after printing a UserError (or a
    DatasetError, its subclass) as one ``error: ...`` line on stderr."""
    try:
        action(*args)
    except UserError as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    return 0
