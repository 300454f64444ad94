"""User-facing errors: one line that names the bad value and the fix; the CLI exits with code 2."""


class EdgecnnError(Exception):
    """Bad input from the user (path, option, data). The CLI prints it on one line, exit code 2."""
