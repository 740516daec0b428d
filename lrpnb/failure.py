"""The exception of a run that explained some samples and not others."""

__all__ = ["Failure"]


class Failure(Exception):
    """Some samples could not be explained; the others were written.

    The command line reports it as one line (``lrpnb COMMAND: message``)
    and exits with status 1.
    """
