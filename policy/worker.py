"""A sampling worker: this project's batched sampling behind the part of vLLM's OpenAI-compatible
API that the app uses, so that generation runs in its own process (or on another machine) and
the app's process only serves pages, logins and votes.

    python -m policy serve --model smollm2 --port 8001

The same app talks to vLLM on a GPU server: `/v1/models`, `/v1/chat/completions` (with `n` and
`seed`), `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` take and return what vLLM's do.
Requests with the same version, sampling settings and seed that arrive together are answered
in one `generate` call (the app's queue sends a batch's prompts with one seed); vLLM batches
continuously instead. An answer is reproduced by its seed together with its batch's prompts.
"""
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field

from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from .registry import PolicyRegistry
from .sampling import Answer, SamplingConfig


@dataclass
class WorkerConfig:
    model: str = "smollm2"
    host: str = "127.0.0.1"
    port: int = 8001
    max_rows: int = 16          # answers per `generate` call; measured by bench/annotators.py
    gather_seconds: float = 0.05  # how long a request that finds the model idle waits for company
    max_tokens: int = 1024


@dataclass(eq=False)
class _Request:
    version: int
    prompt: str
    cfg: SamplingConfig
    n: int
    seed: int
    done: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] | None = None
    error: Exception | None = None


class Batcher:
    """One thread runs the model; requests with the same version, sampling settings and seed
    that are waiting when it is free share one call, up to `max_rows` answers."""

    def __init__(self, registry: PolicyRegistry, cfg: WorkerConfig):
        self.registry, self.cfg = registry, cfg
        self._pending: list[_Request] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._run_forever, name="sampling", daemon=True).start()

    def answer(self, version: int, prompt: str, cfg: SamplingConfig, n: int, seed: int) -> list[Answer]:
        request = _Request(version, prompt, cfg, n, seed)
        with self._arrived:
            self._pending.append(request)
            self._arrived.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.answers

    def _take_batch(self) -> list[_Request]:
        with self._arrived:
            idle = not self._pending
            while not self._pending:
                self._arrived.wait()
        if idle:  # the requests of one refill arrive a few milliseconds apart
            time.sleep(self.cfg.gather_seconds)
        with self._arrived:
            first = self._pending[0]
            batch, rows = [], 0
            for r in self._pending:
                same = (r.version, r.cfg, r.n, r.seed) == (first.version, first.cfg, first.n, first.seed)
                if same and rows + r.n <= max(self.cfg.max_rows, first.n):
                    batch.append(r)
                    rows += r.n
            self._pending = [r for r in self._pending if r not in batch]
        return batch

    def _run_forever(self) -> None:
        while True:
            batch = self._take_batch()
            try:
                answers = self.registry.complete(batch[0].version, [r.prompt for r in batch], batch[0].cfg,
                                                 batch[0].seed, batch[0].n)
                for request, texts in zip(batch, answers):
                    request.answers = texts
            except Exception as e:  # noqa: BLE001 - each caller gets the error as its reply
                for request in batch:
                    request.error = e
            for request in batch:
                request.done.set()


def _error(status: int, message: str) -> JSONResponse:
    """OpenAI's error shape, which clients (and the app) read the message from."""
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": status}},
                        status_code=status)


def build_app(registry: PolicyRegistry, cfg: WorkerConfig) -> FastAPI:
    app = FastAPI(title="prefloop sampling worker")
    batcher = Batcher(registry, cfg)
    adapters: dict[str, int] = {}  # adapter name -> the registry's id for it
    ids = itertools.count(1)
    loading = threading.Lock()

    def model_id(name: str) -> int | None:
        return 0 if name == registry.base_model else adapters.get(name)

    @app.get("/health")
    def health() -> dict:
        return {}

    @app.get("/v1/models")
    def list_models() -> dict:
        base = {"id": registry.base_model, "object": "model", "owned_by": "prefloop",
                "root": registry.base_model, "parent": None}
        return {"object": "list", "data": [base] + [
            {"id": name, "object": "model", "owned_by": "prefloop", "root": name, "parent": registry.base_model}
            for name in adapters]}

    @app.post("/v1/load_lora_adapter")
    def load_lora_adapter(body: dict = Body(...)):
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "lora_name and lora_path are required")
        with loading:
            if name in adapters:
                return _error(400, f"The lora adapter '{name}' has already been loaded.")
            version = next(ids)
            try:
                registry.ensure_loaded(version, path)
            except Exception as e:  # noqa: BLE001 - a bad path is the caller's error
                return _error(400, f"cannot load the lora adapter '{name}' from {path}: {e}")
            adapters[name] = version
        return f"Success: LoRA adapter '{name}' added successfully."

    @app.post("/v1/unload_lora_adapter")
    def unload_lora_adapter(body: dict = Body(...)):
        name = body.get("lora_name")
        if name not in adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.")
        registry.unload(adapters.pop(name))
        return f"Success: LoRA adapter '{name}' removed successfully."

    @app.post("/v1/chat/completions")
    def chat_completions(body: dict = Body(...)):
        version = model_id(body.get("model", ""))
        if version is None:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        messages = body.get("messages") or []
        if not messages or messages[-1].get("role") != "user" or not isinstance(messages[-1].get("content"), str):
            return _error(400, "messages must end with one user message with text content")
        try:
            n = int(body.get("n", 1))
            sampling = SamplingConfig(temperature=float(body.get("temperature", 1.0)),
                                      top_p=float(body.get("top_p", 1.0)),
                                      max_new_tokens=int(body.get("max_tokens") or SamplingConfig.max_new_tokens))
            seed = int(body["seed"]) if body.get("seed") is not None else int.from_bytes(uuid.uuid4().bytes[:4])
        except (TypeError, ValueError) as e:
            return _error(400, f"bad sampling parameter: {e}")
        if not 1 <= n <= cfg.max_rows or not 1 <= sampling.max_new_tokens <= cfg.max_tokens:
            return _error(400, f"n must be 1-{cfg.max_rows} and max_tokens 1-{cfg.max_tokens}")
        answers = batcher.answer(version, messages[-1]["content"], sampling, n, seed)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": i, "message": {"role": "assistant", "content": a.text},
                             "finish_reason": "length" if a.cut_off else "stop"}
                            for i, a in enumerate(answers)]}

    return app
