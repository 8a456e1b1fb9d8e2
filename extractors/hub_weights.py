"""Pretrained files of timm and open_clip models: found in the Hugging Face / torch caches, or downloaded once.

Both libraries would download on first use, but a compute node without internet then retries for tens of seconds
per file (huggingface_hub: 5 retries with back-off, ~24 s per file, measured here) before failing with a message
that names neither the file nor a fix. So the file is resolved here first:

1. already in the cache (``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``; ``$TORCH_HOME/hub/checkpoints``
   for timm URL weights; ``~/.cache/clip`` for open_clip URL weights): its path, no network access at all;
2. otherwise, unless ``HF_HUB_OFFLINE=1``, a 3-second TCP probe of the host, then the library's own download into
   that cache (``python -m fer_zoo fetch-weights`` does exactly this on a login node);
3. otherwise one :class:`~extractors.weights.WeightsUnavailableError` naming the repository, the file, the cache
   path and the command.

The model is then always built from the local file, by the same code as a file given by path
(:func:`extractors.timm_frames.load_timm_file`, :func:`extractors.clip_frames.load_clip_file`: every tensor checked,
the library's own conversion where the file needs one), so the offline route is the route.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from extractors.weights import RANDOM_SOURCE, WeightsUnavailableError  # noqa: F401  (RANDOM_SOURCE re-exported)

FETCH_COMMAND = "python -m fer_zoo fetch-weights --config <your extraction config>"
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HubFile:
    """One weights file: on the Hugging Face Hub (``repo_id`` + ``filenames``, tried in order) or at a ``url``."""

    repo_id: str | None = None
    filenames: tuple[str, ...] = ()
    revision: str | None = None
    url: str | None = None
    url_cache: Path | None = None  # the folder the library keeps ``url`` downloads in

    def describe(self) -> str:
        if self.repo_id:
            rev = f"@{self.revision}" if self.revision else ""
            return f"huggingface.co/{self.repo_id}{rev} ({' or '.join(self.filenames)})"
        return str(self.url)

    def expected_path(self) -> Path:
        """Where the file will be once fetched (the first candidate name)."""
        if self.repo_id:
            folder = "models--" + self.repo_id.replace("/", "--")
            return hf_cache_dir() / folder / "snapshots" / "<revision>" / self.filenames[0]
        assert self.url and self.url_cache
        return self.url_cache / Path(urllib.parse.urlparse(self.url).path).name


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``FER_ZOO_OFFLINE``) set to a true value: never touch the network."""
    return any(os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"}
               for k in ("HF_HUB_OFFLINE", "FER_ZOO_OFFLINE"))


def cached_path(f: HubFile) -> Path | None:
    """The file's path in the local cache, or ``None``; never touches the network."""
    if f.repo_id:
        from huggingface_hub import try_to_load_from_cache

        for name in f.filenames:
            hit = try_to_load_from_cache(f.repo_id, name, cache_dir=hf_cache_dir(), revision=f.revision)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
        return None
    p = f.expected_path()
    return p if p.is_file() else None


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` if a TCP connection to ``url``'s host (or the HTTPS proxy) opens within ``timeout`` s, else why not."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urllib.parse.urlparse(proxy or url)
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"cannot reach {host}:{port} ({err})"


def unavailable(f: HubFile, what: str, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"{what}: pretrained weights {f.describe()} are not in the local cache (expected at {f.expected_path()}) "
        f"and cannot be downloaded here: {why}. On a machine with internet (a login node) run `{FETCH_COMMAND}` "
        f"with the same HF_HOME/HF_HUB_CACHE (or TORCH_HOME) as this machine, or download the file and pass its "
        "path as the weights of this extractor."
    )


def resolve(f: HubFile, what: str) -> Path:
    """The local path of ``f``: from the cache, else downloaded into it (see the module docstring).

    Raises :class:`WeightsUnavailableError` (offline, unreachable, or the download failed) naming the file.
    """
    hit = cached_path(f)
    if hit is not None:
        return hit
    if hub_offline():
        raise unavailable(f, what, "HF_HUB_OFFLINE is set")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if f.repo_id else str(f.url)
    why = reachable(endpoint)
    if why:
        raise unavailable(f, what, why)
    try:
        return _download(f)
    except Exception as err:  # the library's own error: a network failure, a missing file on the server
        raise unavailable(f, what, f"{type(err).__name__}: {err}") from err


def _download(f: HubFile) -> Path:
    if f.repo_id:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        last: Exception | None = None
        for name in f.filenames:
            try:
                return Path(hf_hub_download(f.repo_id, name, revision=f.revision, cache_dir=hf_cache_dir()))
            except RemoteEntryNotFoundError as err:  # not this name on the server: try the next candidate
                last = err
        raise FileNotFoundError(f"none of {f.filenames} in {f.repo_id}") from last
    from torch.hub import download_url_to_file

    dest = f.expected_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    download_url_to_file(str(f.url), str(dest), progress=False)
    return dest
