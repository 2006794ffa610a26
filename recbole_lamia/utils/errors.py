"""Errors that are the user's to fix: the command line prints them as one line and exits with status 2."""


class UserInputError(ValueError):
    """A bad setting, file or argument, with a message that names it and says what is allowed."""


class CheckpointError(UserInputError):
    """A checkpoint that is missing, corrupt, unsafe to load, or made for another model, dataset or set of IDs."""


def first_line(text):
    """The first non-empty line of an error text, for one-line messages."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "unknown error")
