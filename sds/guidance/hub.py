"""Hub ids without network: decide in about a second whether a model can load, before diffusers tries.

Left to itself, a ``from_pretrained`` of a hub id on a machine without network spends about 30 s failing:
``huggingface_hub.hf_hub_download`` answers a failed metadata request for a file it has not cached by trying again
through ``http_backoff`` (5 retries, waits of 1 + 2 + 4 + 8 + 8 s), logging a warning for each, and then says only
that the file could not be found. Here one request with a short timeout and no retries tells whether the hub
answers; if it does not, a model in the local cache loads from there, and one that is not fails in one line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sds.errors import UserError, first_line

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
"""How long the one probe of the hub may take: a refused connection or an unknown host fails at once; a network
that drops packets silently fails after this."""


REMEMBER_S = 60.0
"""How long a probe's answer stands: the command checks before torch loads and again where the weights load."""

_ANSWERS: dict[tuple[str, str | None], tuple[float, bool]] = {}


class HubUnreachableError(UserError):
    """A hub id that is not in the local cache, on a machine that cannot reach the hub."""


def is_hub_id(model: str) -> bool:
    """Whether `model` names a hub model ("org/name") rather than a local folder or file."""
    if model == "builtin" or Path(model).expanduser().exists():
        return False
    return not (model.startswith(("/", ".", "~")) or model.count("/") != 1
                or Path(model).suffix in (".safetensors", ".ckpt"))


def cached_index(repo_id: str, revision: str | None = None) -> Path | None:
    """The model's model_index.json in the local Hugging Face cache, if it holds one (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json", revision=revision)
    return Path(found) if isinstance(found, str) else None


def cached(repo_id: str, revision: str | None) -> bool:
    """Whether the local Hugging Face cache holds the model's model_index.json (no network)."""
    return cached_index(repo_id, revision) is not None


def unreachable(repo_id: str, revision: str | None) -> str | None:
    """Why the hub cannot be reached (one line), or None when it answered: with the file, or with an HTTP error
    (no such model, gated, ...) that ``from_pretrained`` reports itself. One request, no retries."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import HfHubHTTPError, HFValidationError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "model_index.json", revision=revision), timeout=PROBE_TIMEOUT_S)
    except (HfHubHTTPError, HFValidationError):  # the hub answered, or the id is malformed: not a network matter
        return None
    except Exception as e:  # the HTTP client's connection and timeout errors differ between huggingface_hub versions
        return first_line(e)
    return None


def load_offline(repo_id: str, revision: str | None) -> bool:
    """Whether `repo_id` must load from the local cache only (True: offline, but cached) or may download (False).
    Raises HubUnreachableError, in one line saying what to do, when it is neither reachable nor cached."""
    key = (repo_id, revision)
    if key in _ANSWERS and time.monotonic() - _ANSWERS[key][0] < REMEMBER_S:
        return _ANSWERS[key][1]
    answer = _decide(repo_id, revision)
    _ANSWERS[key] = (time.monotonic(), answer)
    return answer


def check_model(model: str, revision: str | None) -> None:
    """For a hub id, fail now (in about a second, before torch and diffusers take seconds to import) when it can
    neither be fetched nor loaded from the cache; anything else is checked where it loads."""
    if is_hub_id(model):
        load_offline(model, revision)


def _decide(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        reason = unreachable(repo_id, revision)
        if reason is None:
            return False
        reason = f"the network is unreachable: {reason}"
    if cached(repo_id, revision):
        log.info("%s: %s; loading the copy in the local cache", repo_id, reason)
        return True
    raise HubUnreachableError(
        f"model {repo_id!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and this machine is "
        f"offline ({reason}); download it once with network (hf download {repo_id}, or an sds run with "
        f"model={repo_id}), or pass model=/path/to/a/local/diffusers/folder")
