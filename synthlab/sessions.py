"""Server sessions: inputs uploaded once (a planning CT and its contours) and reused by later requests.

A session is a folder of validated input files named by the server. It expires
``seconds`` after its last use; :meth:`SessionStore.sweep` deletes expired ones.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Session:
    id: str
    folder: Path
    files: dict[str, Path]
    seconds: float
    last_used: float

    @property
    def expires_in(self) -> float:
        return max(0.0, self.last_used + self.seconds - time.time())


class SessionStore:
    def __init__(self, root: Path, default_seconds: float, max_seconds: float = 24 * 3600):
        self.root, self.default_seconds, self.max_seconds = root, default_seconds, max_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new_folder(self) -> tuple[str, Path]:
        session_id = uuid.uuid4().hex
        folder = self.root / session_id
        folder.mkdir(parents=True)
        return session_id, folder

    def add(self, session_id: str, folder: Path, files: dict[str, Path], seconds: float | None) -> Session:
        seconds = min(self.max_seconds, seconds or self.default_seconds)
        session = Session(session_id, folder, files, seconds, time.time())
        with self._lock:
            self._sessions[session_id] = session
        return session

    def use(self, session_id: str) -> Session | None:
        """The live session (its expiry restarts), or None if unknown or expired."""
        self.sweep()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                session.last_used = time.time()
            return session

    def link_into(self, session: Session, name: str, folder: Path) -> Path:
        """A job's own copy of a session file (a hard link where the file system allows)."""
        source = session.files[name]
        target = folder / (name + source.name.removeprefix(name))
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return target

    def delete(self, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            shutil.rmtree(session.folder, ignore_errors=True)
        return session is not None

    def sweep(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            expired = [s.id for s in self._sessions.values() if now > s.last_used + s.seconds]
        for session_id in expired:
            self.delete(session_id)

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)
