"""The one exception type for bad user input.

Commands turn an :class:`InputError` into a one-line message and exit code 2,
never a traceback; everything else is a bug and keeps its traceback.
"""

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """A user-supplied input is missing, unreadable or unsuitable.

    ``name`` is how the user knows the input (a command-line option such as
    ``--t1`` or a file path); the message says what is wrong with it.
    """

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")

    def __reduce__(self):
        """Pickle by name and problem, so the error crosses from a worker process intact."""
        return type(self), (self.name, self.problem)
