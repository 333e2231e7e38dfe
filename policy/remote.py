"""Sampling over OpenAI-compatible endpoints: workers started with `python -m policy serve`, or
vLLM on a GPU server. The app's queue and Compare tab call this exactly as they call a local
`PolicyRegistry`.

Version N is served under the adapter name `policy-vN`: loaded into every endpoint when it
goes live and never replaced in place, so a pair's version is the name it was sampled with.
Version 0 is the endpoint's base model. Prompts are spread over the endpoints; an endpoint that
fails is skipped, and one that comes back (a restarted worker has no adapters) is given the
adapters again before it is asked for answers. vLLM loads LoRA adapters only: an IA3 version is
refused before it is sent to an endpoint that is not a prefloop worker.
"""
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from . import adapters
from .sampling import Answer, Cancelled, Pick, SampledPair, SamplingConfig, distinct_pairs, first_two


class EndpointError(RuntimeError):
    """No endpoint could answer."""


class AdapterRefused(ValueError):
    """An endpoint cannot load this kind of adapter."""


class RemotePolicy:
    def __init__(self, endpoints: list[str], base_model: str, timeout: float = 600.0):
        if not endpoints:
            raise ValueError("the openai sampling backend needs at least one endpoint URL")
        self.endpoints = [url.rstrip("/") for url in endpoints]
        self.base_model = base_model  # how the database names the base model, not the endpoint
        # A long read (a batch on a busy CPU) is normal; a slow connect means the endpoint is down.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))
        self._adapters: dict[int, tuple[str, str]] = {}  # version -> adapter path and kind
        self._loaded: dict[str, set[int]] = {url: set() for url in self.endpoints}
        self._base_ids: dict[str, str] = {}
        self._turn = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="remote-sampling")

    @staticmethod
    def adapter_name(version_id: int) -> str:
        return f"policy-v{version_id}"

    def ensure_loaded(self, version_id: int, adapter_path: str | Path | None) -> None:
        """Load a version's adapter into every endpoint that answers now; the others get it
        before they are next asked for its answers."""
        if version_id == 0:
            return
        if not adapter_path:
            raise ValueError(f"policy version {version_id} has no adapter")
        if version_id in self._adapters:
            return  # a version's adapter never changes; endpoints that lack it get it when asked
        kind = self.check_servable(adapter_path)
        self._adapters[version_id] = str(Path(adapter_path).resolve()), kind
        for url in self.endpoints:
            try:
                self._model_on(url, version_id)
            except httpx.HTTPError:
                pass  # down for now: loaded when it is back

    def check_servable(self, adapter_path: str | Path) -> str:
        """The adapter's kind; `AdapterRefused` if an endpoint answering now cannot load it. One
        that is down is asked when it is back, before the adapter is sent to it."""
        kind = adapters.kind(adapter_path)
        for url in self.endpoints:
            try:
                self._check_kind(url, kind)
            except httpx.HTTPError:
                pass
        return kind

    def _check_kind(self, url: str, kind: str) -> None:
        if kind == "lora":
            return
        owners = {m.get("owned_by") for m in self._http.get(f"{url}/v1/models").raise_for_status().json()["data"]}
        if owners != {"prefloop"}:
            raise AdapterRefused(f"{url} loads LoRA adapters only (it is not a `python -m policy serve` worker) "
                                 f"and this version is an {kind.upper()} adapter: serve it with workers or the "
                                 "local backend, or train LoRA rounds")

    def _post(self, url: str, path: str, body: dict) -> httpx.Response:
        response = self._http.post(f"{url}{path}", json=body)
        if response.status_code >= 400:
            message = response.text
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise httpx.HTTPStatusError(f"{url}{path}: {message}", request=response.request, response=response)
        return response

    def _model_on(self, url: str, version_id: int) -> str:
        """The model name to sample this version with on this endpoint, loading its adapter first."""
        if version_id == 0:
            if url not in self._base_ids:
                models = self._http.get(f"{url}/v1/models").raise_for_status().json()["data"]
                self._base_ids[url] = next(m["id"] for m in models if not m.get("parent"))
            return self._base_ids[url]
        name = self.adapter_name(version_id)
        if version_id not in self._loaded[url]:
            if version_id not in self._adapters:
                raise KeyError(f"policy version {version_id} is not loaded")
            path, kind = self._adapters[version_id]
            self._check_kind(url, kind)
            try:
                self._post(url, "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
            except httpx.HTTPStatusError as e:
                if "already been loaded" not in str(e):
                    raise
            self._loaded[url].add(version_id)
        return name

    def _ask(self, url: str, version_id: int, prompt: str, cfg: SamplingConfig, seed: int, n: int) -> list[Answer]:
        body = {"model": self._model_on(url, version_id), "messages": [{"role": "user", "content": prompt}],
                "n": n, "seed": seed, "temperature": cfg.temperature, "top_p": cfg.top_p,
                "max_tokens": cfg.max_new_tokens}
        choices = self._post(url, "/v1/chat/completions", body).json()["choices"]
        return [Answer(c["message"]["content"].strip(), c.get("finish_reason") == "length")
                for c in sorted(choices, key=lambda c: c["index"])]

    def _answers(self, version_id: int, prompt: str, cfg: SamplingConfig, seed: int, n: int) -> list[Answer]:
        """n answers from the next endpoint in turn, or from the others if it fails."""
        first = next(self._turn)
        errors = []
        for k in range(len(self.endpoints)):
            url = self.endpoints[(first + k) % len(self.endpoints)]
            try:
                try:
                    return self._ask(url, version_id, prompt, cfg, seed, n)
                except httpx.HTTPStatusError as e:
                    if e.response.status_code != 404:
                        raise
                    self._loaded[url].clear()  # a restarted endpoint: give it the adapters again
                    return self._ask(url, version_id, prompt, cfg, seed, n)
            except (httpx.HTTPError, KeyError, ValueError) as e:
                errors.append(f"{url}: {e}")
        raise EndpointError("no sampling endpoint answered: " + "; ".join(errors))

    def complete(self, version_id: int, prompts: list[str], cfg: SamplingConfig, seed: int,
                 copies: int = 1) -> list[list[Answer]]:
        """`copies` answers to each prompt, the prompts sent at once so endpoints batch them."""
        return list(self._pool.map(lambda prompt: self._answers(version_id, prompt, cfg, seed, copies), prompts))

    def sample_pairs(self, version_id: int, prompts: list[str], cfg: SamplingConfig, seed: int,
                     cancel: threading.Event | None = None, copies: int = 2, pick: Pick = first_two
                     ) -> list[SampledPair]:
        """Two answers to each prompt; see `sampling.sample_pairs`. Requests already sent cannot
        be stopped: `cancel` throws their answers away when they come back."""
        start = time.perf_counter()

        def sample(indices: list[int], seed: int) -> list[list[Answer]]:
            answers = self.complete(version_id, [prompts[i] for i in indices], cfg, seed, copies)
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            return answers

        made = distinct_pairs(sample, len(prompts), cfg.attempts, seed, pick)
        share = (time.perf_counter() - start) / max(len(prompts), 1)
        # The endpoint cuts an over-long prompt to fit; only a local model can say whether it did.
        return [SampledPair((a.text, b.text), s, False, share, (a.cut_off, b.cut_off)) for a, b, s in made]
