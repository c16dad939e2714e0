"""The backend the modules use. Local for now; the remote GPU server plugs in here."""

from synthlab.client import Backend, LocalBackend


def current_backend() -> Backend:
    return LocalBackend()
