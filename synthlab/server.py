"""``synthlab serve``: the HTTP inference server (FastAPI), with paths modelled on MONAI Label.

- ``GET /health``: liveness (no token needed);
- ``GET /info/``: version, device, queue, tasks and models with their cards;
- ``POST /infer/{task}``: multipart, a ``params`` JSON part (the task's options,
  ``outputs`` {name: format} and ``session``) and one file per input; answers a
  zip of the outputs plus ``result.json``, or with ``?wait=false`` a job id at
  once (202) to follow at ``GET /jobs/{id}`` and fetch at ``GET /jobs/{id}/result``;
  ``DELETE /jobs/{id}`` cancels;
- ``PUT /session/`` uploads inputs once for several requests; ``DELETE /session/{id}``.

Every error is JSON (``{"detail": "..."}``), never a traceback. Files are named
by the server inside its own work folder; nothing a client sends becomes a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from synthlab import __version__, volume
from synthlab.device import describe, resolve_device
from synthlab.errors import InputError
from synthlab.job_queue import JobQueue, JobState, QueueFull, ServerJob
from synthlab.registry import REGISTRY_ENV, Registry
from synthlab.sessions import SessionStore
from synthlab.tasks import TASKS, FileSlot, TaskSpec

log = logging.getLogger("synthlab.server")

SWEEP_SECONDS = 30.0
WAIT_POLL_SECONDS = 0.1
SESSION_SLOTS = {name: slot for spec in TASKS.values() for name, slot in spec.inputs.items()}


@dataclass
class ServerSettings:
    """How the server runs; ``workdir`` (default: a new temporary folder) holds jobs and sessions."""

    token: str | None = None
    max_upload_bytes: int = 1 << 30
    queue_limit: int = 8
    device: str = "auto"
    workdir: Path | None = None
    session_seconds: float = 3600.0
    result_seconds: float = 600.0
    workers: int | None = None  # default: one per CUDA GPU, else one
    registry: Path | None = None  # Models.json to serve (default: $SYNTHLAB_MODELS or the built-in one)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UploadTooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (by Content-Length, or while they stream in)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse({"detail": self._message()}, status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadTooLarge(self._message())
            return message

        return await self.app(scope, counting_receive, send)

    def _message(self) -> str:
        return f"upload larger than the server's limit of {self.max_bytes / 2**20:.0f} MiB"


def _worker_envs(settings: ServerSettings) -> list[dict[str, str]]:
    """One worker per GPU (each sees only its own), or ``settings.workers`` (default one) on CPU."""
    gpus = torch.cuda.device_count() if settings.device in ("auto", "cuda") else 0
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": str(index)} for index in range(settings.workers or gpus)][:gpus]
    return [{} for _ in range(settings.workers or 1)]


def _device_description(settings: ServerSettings) -> str:
    return describe(resolve_device(settings.device))


def _models(registry_path: Path | None) -> list[dict]:
    registry = Registry(registry_path)
    models = []
    for entry in registry.entries:
        card_path = registry.root / entry.card
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        models.append({"id": entry.id, "task": entry.task, "version": entry.version, "inputs": entry.inputs,
                       "default": entry.default, "metrics": entry.metrics, "card": card})
    return models


def create_app(settings: ServerSettings) -> FastAPI:
    """The server application; its work folder, queue and sessions live as long as it does."""
    own_workdir = settings.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="synthlab-serve-")) if own_workdir else Path(settings.workdir)
    (workdir / "jobs").mkdir(parents=True, exist_ok=True)
    sessions = SessionStore(workdir / "sessions", settings.session_seconds)
    jobs = JobQueue(_worker_envs(settings), settings.queue_limit, settings.result_seconds,
                    params={"device": "cuda" if settings.device == "auto" and _has_cuda() else settings.device},
                    env={REGISTRY_ENV: str(settings.registry)} if settings.registry else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        sweeper = asyncio.create_task(_sweep_forever(jobs, sessions))
        yield
        sweeper.cancel()
        jobs.shutdown()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    app = FastAPI(title="SynthLab", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.jobs, app.state.sessions, app.state.workdir = jobs, sessions, workdir
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, error: UploadTooLarge):
        return JSONResponse({"detail": str(error)}, status_code=413, headers={"Connection": "close"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal server error ({type(error).__name__}); see the server log"},
                            status_code=500)

    def authorised(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info/", dependencies=guarded)
    def info() -> dict:
        return {"name": "SynthLab", "version": __version__, "device": _device_description(settings),
                "queue": jobs.counts(), "sessions": sessions.count(),
                "max_upload_mb": settings.max_upload_bytes / 2**20,
                "tasks": {name: spec.describe() for name, spec in TASKS.items()}, "models": _models(settings.registry)}

    @app.post("/infer/{task}", dependencies=guarded)
    async def infer(task: str, request: Request, wait: bool = True):
        spec = TASKS.get(task)
        if spec is None:
            raise HTTPException(404, f"unknown task '{task}' (available: {', '.join(TASKS)})")
        job_id = secrets.token_hex(16)
        job_id_folder = workdir / "jobs" / job_id
        try:
            async with request.form(max_files=len(spec.inputs), max_fields=1) as form:
                params = _params_of(form)
                options, outputs, session_id = _check_params(spec, params)
                uploads = _uploads_of(form, spec.inputs)
                inputs = await _store_inputs(uploads, job_id_folder / "inputs")
            if session_id is not None:
                _add_session_inputs(sessions, session_id, spec, inputs, job_id_folder / "inputs")
            _require_inputs(spec, inputs)
            await asyncio.to_thread(_validate_images, inputs, spec.inputs)
            job = ServerJob(task, job_id_folder, inputs, {name: job_id_folder / (name + suffix)
                                                           for name, suffix in outputs.items()}, options, id=job_id)
            jobs.submit(job)
        except QueueFull as error:
            shutil.rmtree(job_id_folder, ignore_errors=True)
            raise HTTPException(503, str(error), headers={"Retry-After": str(error.retry_after)}) from None
        except BaseException:
            shutil.rmtree(job_id_folder, ignore_errors=True)
            raise
        if not wait:
            return JSONResponse(_job_status(job), status_code=202, headers={"Location": f"/jobs/{job.id}"})
        while not job.finished.is_set():
            if await request.is_disconnected():
                await asyncio.to_thread(jobs.cancel, job.id)
                jobs.discard(job.id)
                raise HTTPException(499, "client disconnected")
            await asyncio.sleep(WAIT_POLL_SECONDS)
        return _result_response(jobs, job)

    @app.get("/jobs/{job_id}", dependencies=guarded)
    def job_status(job_id: str, since: int = 0) -> dict:
        return _job_status(_job(jobs, job_id), since)

    @app.get("/jobs/{job_id}/result", dependencies=guarded)
    def job_result(job_id: str):
        return _result_response(jobs, _job(jobs, job_id))

    @app.delete("/jobs/{job_id}", dependencies=guarded)
    def cancel_job(job_id: str) -> dict:
        _job(jobs, job_id)
        job = jobs.cancel(job_id)
        return _job_status(job)

    @app.put("/session/", dependencies=guarded)
    async def create_session(request: Request) -> dict:
        session_id, folder = sessions.new_folder()
        try:
            async with request.form(max_files=len(SESSION_SLOTS), max_fields=1) as form:
                params = _params_of(form)
                unknown = set(params) - {"seconds"}
                if unknown:
                    raise HTTPException(400, f"params: unknown key(s) {', '.join(sorted(unknown))} (allowed: seconds)")
                seconds = _number(params.get("seconds"), "seconds")
                files = await _store_inputs(_uploads_of(form, SESSION_SLOTS), folder)
            if not files:
                raise HTTPException(400, "a session needs at least one input file")
            await asyncio.to_thread(_validate_images, files, SESSION_SLOTS)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        session = sessions.add(session_id, folder, files, seconds)
        return {"id": session.id, "inputs": sorted(files), "expires_in": round(session.expires_in)}

    @app.delete("/session/{session_id}", dependencies=guarded)
    def delete_session(session_id: str) -> dict:
        if not sessions.delete(session_id):
            raise HTTPException(404, f"no session '{session_id}' (expired or never made)")
        return {"id": session_id, "deleted": True}

    return app


def _has_cuda() -> bool:
    return torch.cuda.is_available()


async def _sweep_forever(jobs: JobQueue, sessions: SessionStore) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        jobs.sweep()
        sessions.sweep()


def _params_of(form) -> dict:
    raw = form.get("params")
    if raw is None:
        return {}
    if not isinstance(raw, str):
        raise HTTPException(400, "params: must be a JSON text part, not a file")
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"params: not valid JSON ({error.msg})") from None
    if not isinstance(params, dict):
        raise HTTPException(400, "params: must be a JSON object")
    return params


def _number(value, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise HTTPException(400, f"params: '{name}' must be a positive number")
    return float(value)


def _check_params(spec: TaskSpec, params: dict) -> tuple[dict, dict[str, str], str | None]:
    """The task's options, the wanted outputs ({name: suffix}) and the session id, all checked."""
    params = dict(params)
    session_id = params.pop("session", None)
    if session_id is not None and not isinstance(session_id, str):
        raise HTTPException(400, "params: 'session' must be a session id string")
    wanted = params.pop("outputs", None)
    options = {}
    for name, value in params.items():
        kind = spec.options.get(name)
        if kind is None:
            allowed = ", ".join(["outputs", "session", *spec.options])
            raise HTTPException(400, f"params: unknown option '{name}' for {spec.name} (allowed: {allowed})")
        accepted = (int, float) if kind is float else kind  # JSON writes 1.0 as 1
        if value is not None and ((isinstance(value, bool) and kind is not bool) or not isinstance(value, accepted)):
            raise HTTPException(400, f"params: option '{name}' must be {kind.__name__}")
        options[name] = value
    return options, _check_outputs(spec, wanted), session_id


def _check_outputs(spec: TaskSpec, wanted) -> dict[str, str]:
    if wanted is None:
        wanted = {}
    if not isinstance(wanted, dict):
        raise HTTPException(400, "params: 'outputs' must map output names to formats, e.g. {\"out_field\": \".nrrd\"}")
    outputs = {name: slot.suffixes[0] for name, slot in spec.outputs.items() if slot.required}
    for name, suffix in wanted.items():
        slot = spec.outputs.get(name)
        if slot is None:
            raise HTTPException(400, f"params: unknown output '{name}' for {spec.name} "
                                     f"(available: {', '.join(spec.outputs)})")
        suffix = suffix or slot.suffixes[0]
        if suffix not in slot.suffixes:
            raise HTTPException(400, f"params: output '{name}' cannot be '{suffix}' "
                                     f"(use one of {', '.join(slot.suffixes)})")
        outputs[name] = suffix
    return outputs


def _uploads_of(form, slots: dict[str, FileSlot]) -> dict[str, tuple[UploadFile, str]]:
    """The uploaded files by input name with their format suffix; unknown names and formats refused."""
    uploads = {}
    for name, value in form.multi_items():
        if name == "params":
            continue
        if name not in slots:
            raise HTTPException(400, f"unexpected part '{name}' (inputs: {', '.join(slots)})")
        if not isinstance(value, UploadFile):
            raise HTTPException(400, f"{name}: must be a file")
        if name in uploads:
            raise HTTPException(400, f"{name}: sent twice")
        suffix = slots[name].accepts(value.filename or "")
        if suffix is None:
            raise HTTPException(415, f"{name}: unsupported format '{value.filename}' "
                                     f"(use one of {', '.join(slots[name].suffixes)})")
        uploads[name] = (value, suffix)
    return uploads


async def _store_inputs(uploads: dict[str, tuple[UploadFile, str]], folder: Path) -> dict[str, Path]:
    """Copy uploads into ``folder`` under server-chosen names (``<input><suffix>``)."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = {}
    for name, (upload, suffix) in uploads.items():
        path = folder / (name + suffix)
        with open(path, "wb") as target:
            await asyncio.to_thread(shutil.copyfileobj, upload.file, target, 1 << 20)
        stored[name] = path
    return stored


def _add_session_inputs(sessions: SessionStore, session_id: str, spec: TaskSpec, inputs: dict[str, Path],
                        folder: Path) -> None:
    session = sessions.use(session_id)
    if session is None:
        raise HTTPException(404, f"no session '{session_id}' (expired or never made)")
    for name in spec.inputs:
        if name not in inputs and name in session.files:
            inputs[name] = sessions.link_into(session, name, folder)


def _require_inputs(spec: TaskSpec, inputs: dict[str, Path]) -> None:
    missing = [name for name, slot in spec.inputs.items() if slot.required and name not in inputs]
    if missing:
        raise HTTPException(400, f"missing input(s) {', '.join(missing)} for {spec.name}")


def _validate_images(files: dict[str, Path], slots: dict[str, FileSlot]) -> None:
    """Read every uploaded image: a file that does not open as its format is refused now, not in the job."""
    for name, path in files.items():
        if not slots[name].is_image:
            continue
        try:
            volume.read_image(path, name, dimension=(2, 3), check_content=False)
        except InputError as error:
            raise HTTPException(400, f"{name}: {error.problem.replace(path.name, 'the upload')}") from None


def _job(jobs: JobQueue, job_id: str) -> ServerJob:
    job = jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job '{job_id}' (finished and collected, expired, or never made)")
    return job


def _job_status(job: ServerJob, since: int = 0) -> dict:
    latest = job.events[-1] if job.events else {}
    return {"id": job.id, "task": job.task, "state": job.state.value, "progress": latest.get("progress", 0.0),
            "message": job.message or latest.get("message", ""), "events": job.events[max(0, since):],
            "next": len(job.events)}


def _result_response(jobs: JobQueue, job: ServerJob):
    """The finished job's outputs as a zip (then the job is forgotten), or its failure as JSON."""
    if job.state in (JobState.queued, JobState.running):
        raise HTTPException(409, f"job {job.id} is still {job.state.value}")
    if job.state == JobState.cancelled:
        jobs.discard(job.id)
        raise HTTPException(409, f"job {job.id} was cancelled")
    if job.state == JobState.failed:
        jobs.discard(job.id)
        raise HTTPException(422 if job.bad_input else 500, job.message)
    archive = job.folder / "result.zip"
    if not archive.exists():
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
            for path in job.outputs.values():
                if path.exists():
                    bundle.write(path, path.name)
            bundle.writestr("result.json", json.dumps({
                "job": job.id, "task": job.task, "results": job.results,
                "outputs": {name: path.name for name, path in job.outputs.items() if path.exists()}}))
    return FileResponse(archive, media_type="application/zip", filename=f"{job.task}-{job.id}.zip",
                        background=BackgroundTask(jobs.discard, job.id))
