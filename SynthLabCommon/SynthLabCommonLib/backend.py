"""Which backend the modules use: local (a subprocess, the default) or a remote SynthLab server.

The choice lives in Slicer's application settings (``qt.QSettings`` in Slicer; any
object with ``value(key, default)`` and ``setValue(key, value)`` in tests), so it
is remembered across sessions and shared by every SynthLab module.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthlab.client import Backend, LocalBackend, RemoteBackend

LOCAL, REMOTE = "local", "remote"
SETTINGS_PREFIX = "SynthLab/Backend/"


@dataclass
class BackendChoice:
    kind: str = LOCAL
    url: str = ""
    token: str = ""

    def problem(self) -> str | None:
        """Why this choice cannot be used, or None."""
        if self.kind not in (LOCAL, REMOTE):
            return f"unknown backend '{self.kind}'"
        if self.kind == REMOTE and not self.url.startswith(("http://", "https://")):
            return "the server URL must start with http:// or https://"
        return None


def load_choice(settings) -> BackendChoice:
    values = {key: str(settings.value(SETTINGS_PREFIX + key, default) or default)
              for key, default in (("kind", LOCAL), ("url", ""), ("token", ""))}
    return BackendChoice(**values)


def save_choice(settings, choice: BackendChoice) -> None:
    for key in ("kind", "url", "token"):
        settings.setValue(SETTINGS_PREFIX + key, getattr(choice, key))


def make_backend(choice: BackendChoice) -> Backend:
    problem = choice.problem()
    if problem:
        raise ValueError(problem)
    if choice.kind == REMOTE:
        return RemoteBackend(choice.url, choice.token or None)
    return LocalBackend()


def describe_server(choice: BackendChoice) -> str:
    """What "Test connection" shows: the server, its device and its models (raises BackendError if unreachable)."""
    backend = make_backend(choice)
    if not isinstance(backend, RemoteBackend):
        return "Local backend: tasks run in a subprocess on this computer."
    info = backend.info()
    models = [f"  {model['id']} ({model['task']}{', default' if model.get('default') else ''})"
              for model in info["models"]] or ["  (no models registered)"]
    return "\n".join([f"{info['name']} {info['version']} at {choice.url} on {info['device']}",
                      f"queue: {info['queue']['running']} running, {info['queue']['waiting']} waiting",
                      "models:", *models])


def current_backend(settings=None) -> Backend:
    """The backend chosen in the settings (Slicer's own settings when none are given)."""
    if settings is None:
        import qt

        settings = qt.QSettings()
    return make_backend(load_choice(settings))
