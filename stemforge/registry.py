"""Named pretrained models, and a resumable, checksum-verified downloader.

The registry lives in ``registry.json`` next to this file: a list of models, each
either downloadable (``url`` set), shipped in the wheel (``weights`` set, a path
relative to the package) or a bag of other entries (``members`` set: each stem is a
weighted mean of the members' estimates, see :class:`stemforge.models.StemBag`).
Downloads go to :func:`cache_dir` and are only moved into place once their sha256
(and size, when known) match the registry.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import typing as tp
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path

import platformdirs
from tqdm import tqdm

from stemforge.errors import StemforgeError

PACKAGE_DIR = Path(__file__).resolve().parent
REGISTRY_PATH = PACKAGE_DIR / "registry.json"
CACHE_ENV = "STEMFORGE_CACHE"
CHUNK_SIZE = 1 << 20
USER_AGENT = "stemforge-downloader"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class BagMember:
    """One network of a bag: a registry name and its weight per stem (stems left out weigh 0)."""

    model: str
    weights: dict[str, float]


@dataclass(frozen=True)
class ModelEntry:
    """One named model of the registry (see ``registry.json``)."""

    name: str
    architecture: str
    config: str | None  # URL of the YAML, or a path relative to the package; None for a bag
    url: str | None  # checkpoint URL; None for models shipped in the wheel
    weights: str | None  # path relative to the package for shipped models
    sha256: str | None
    size: int | None  # bytes
    licence: str
    stems: tuple[str, ...]
    description: str
    sample_rate: int
    config_sha256: str | None = None
    provenance: str = ""
    members: tuple[BagMember, ...] = ()  # a bag: its networks; url, weights and config are None

    @property
    def shipped(self) -> bool:
        """True when the weights are part of the installed package (a bag: see :func:`bag_members`)."""
        return self.weights is not None

    @property
    def is_bag(self) -> bool:
        return bool(self.members)


_REQUIRED = ("name", "architecture", "config", "url", "weights", "sha256", "size",
             "licence", "stems", "description", "sample_rate")
_OPTIONAL = ("config_sha256", "provenance", "members")


# ---------------------------------------------------------------------------
# Registry loading and validation


def load_registry(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """Load and validate a registry file (default: the one shipped with stemforge).

    The file is parsed and validated once per path; later calls reuse the result.
    Raises :class:`StemforgeError` naming the entry and field on any problem.
    """
    resolved = Path(path).resolve() if path is not None else REGISTRY_PATH
    return dict(_load_registry_cached(resolved))


@functools.lru_cache(maxsize=None)
def _load_registry_cached(path: Path) -> dict[str, ModelEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StemforgeError(f"Cannot read model registry {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise StemforgeError(f"Model registry {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise StemforgeError(f"Model registry {path} must be a JSON list of models.")
    registry: dict[str, ModelEntry] = {}
    for index, raw in enumerate(data):
        entry = _parse_entry(raw, f"{path}: model #{index}")
        if entry.name in registry:
            raise StemforgeError(f"{path}: model #{index}: duplicate name {entry.name!r}.")
        registry[entry.name] = entry
    for entry in registry.values():
        _check_bag(entry, registry, f"{path}: model {entry.name!r}")
    return registry


def _parse_entry(raw: tp.Any, where: str) -> ModelEntry:
    """Validate one JSON object and turn it into a :class:`ModelEntry`."""
    if not isinstance(raw, dict):
        raise StemforgeError(f"{where}: must be a JSON object, got {type(raw).__name__}.")
    if isinstance(raw.get("name"), str):
        where = f"{where} ({raw['name']})"
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise StemforgeError(f"{where}: missing field(s) {', '.join(map(repr, missing))}.")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise StemforgeError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}.")

    def bad(field: str, expected: str) -> StemforgeError:
        return StemforgeError(f"{where}: field {field!r} must be {expected}, "
                              f"got {raw.get(field)!r}.")

    members = _parse_members(raw.get("members"), where) if "members" in raw else ()
    for field in ("name", "architecture", "licence", "description") + (() if members else ("config",)):
        if not isinstance(raw[field], str) or not raw[field].strip():
            raise bad(field, "a non-empty string")
    if not _NAME_RE.fullmatch(raw["name"]):
        raise bad("name", "lowercase letters, digits, '.', '_' or '-'")
    if members:
        for field in ("url", "weights", "config", "sha256", "size", "config_sha256"):
            if raw.get(field) is not None:
                raise bad(field, "null in a bag (its members hold the files)")
        if raw["architecture"] != "bag":
            raise bad("architecture", "'bag' for an entry with members")
    for field in ("url", "weights"):
        if raw[field] is not None and (not isinstance(raw[field], str) or not raw[field]):
            raise bad(field, "a non-empty string or null")
    if not members and (raw["url"] is None) == (raw["weights"] is None):
        raise StemforgeError(f"{where}: exactly one of fields 'url' (download) and "
                             "'weights' (shipped file) must be set, or 'members' for a bag.")
    if raw["url"] is not None and not _is_url(raw["url"]):
        raise bad("url", "an http(s) URL")
    for field in ("sha256", "config_sha256"):
        value = raw.get(field)
        if value is not None and not (isinstance(value, str) and _SHA256_RE.fullmatch(value)):
            raise bad(field, "64 lowercase hex characters or null")
    size = raw["size"]
    if size is not None and (type(size) is not int or size <= 0):
        raise bad("size", "a positive integer (bytes) or null")
    rate = raw["sample_rate"]
    if type(rate) is not int or rate <= 0:
        raise bad("sample_rate", "a positive integer")
    stems = raw["stems"]
    if (not isinstance(stems, list) or not stems
            or not all(isinstance(s, str) and s for s in stems) or len(set(stems)) != len(stems)):
        raise bad("stems", "a non-empty list of distinct strings")
    provenance = raw.get("provenance", "")
    if not isinstance(provenance, str):
        raise bad("provenance", "a string")
    values = {f.name: raw.get(f.name, f.default) for f in fields(ModelEntry)}
    values["stems"] = tuple(stems)
    values["members"] = members
    return ModelEntry(**values)


def _parse_members(raw: tp.Any, where: str) -> tuple[BagMember, ...]:
    """``[{"model": NAME, "weights": {stem: weight}}, ...]`` -> members (cross-checked in :func:`_check_bag`)."""
    if not isinstance(raw, list) or not raw:
        raise StemforgeError(f"{where}: field 'members' must be a non-empty list of "
                             '{"model": NAME, "weights": {STEM: WEIGHT}}, got ' f"{raw!r}.")
    members = []
    for i, item in enumerate(raw):
        weights = item.get("weights") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or set(item) != {"model", "weights"} or not isinstance(item["model"], str)
                or not isinstance(weights, dict) or not weights
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                           for w in weights.values())):
            raise StemforgeError(f"{where}: field 'members' item {i} must be "
                                 '{"model": NAME, "weights": {STEM: WEIGHT >= 0}}, ' f"got {item!r}.")
        members.append(BagMember(item["model"], {str(k): float(v) for k, v in weights.items()}))
    return tuple(members)


def _check_bag(entry: ModelEntry, registry: dict[str, ModelEntry], where: str) -> None:
    """A bag's members are registered networks with the bag's stems, and every stem has a weight > 0."""
    for member in entry.members:
        other = registry.get(member.model)
        if other is None:
            raise StemforgeError(f"{where}: field 'members' names {member.model!r}, which is not in the registry.")
        if other.is_bag:
            raise StemforgeError(f"{where}: field 'members' names {member.model!r}, which is a bag itself.")
        if other.stems != entry.stems or other.sample_rate != entry.sample_rate:
            raise StemforgeError(f"{where}: field 'members': {member.model!r} outputs {', '.join(other.stems)} at "
                                 f"{other.sample_rate} Hz, not the bag's stems {', '.join(entry.stems)} in that "
                                 f"order at {entry.sample_rate} Hz.")
        unknown = sorted(set(member.weights) - set(entry.stems))
        if unknown:
            raise StemforgeError(f"{where}: field 'members': {member.model!r} weighs unknown stem(s) "
                                 f"{', '.join(unknown)}.")
    silent = [s for s in entry.stems if not any(m.weights.get(s, 0.0) > 0 for m in entry.members)]
    if entry.members and silent:
        raise StemforgeError(f"{where}: field 'members': no member has a weight > 0 for {', '.join(silent)}.")


def bag_members(entry: ModelEntry) -> list[ModelEntry]:
    """The registry entries of a bag's networks (``[entry]`` for a single network)."""
    return [get_model(m.model) for m in entry.members] if entry.is_bag else [entry]


def bag_weights(entry: ModelEntry) -> list[list[float]]:
    """``[members, stems]``: each member's weight for each of the bag's stems."""
    return [[m.weights.get(s, 0.0) for s in entry.stems] for m in entry.members]


def get_model(name: str) -> ModelEntry:
    """Return the registry entry called ``name``, suggesting close names if unknown."""
    registry = load_registry()
    if name in registry:
        return registry[name]
    close = difflib.get_close_matches(name, list(registry), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise StemforgeError(f"Unknown model {name!r}.{hint} "
                         "Run `stemforge models` to list the available models.")


# ---------------------------------------------------------------------------
# Cache layout


def cache_dir() -> Path:
    """Directory holding downloaded models, one sub-folder per model name.

    Defaults to ``<user cache>/stemforge/models``; the ``STEMFORGE_CACHE``
    environment variable replaces it entirely.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("stemforge")) / "models"


def _is_url(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https")


def _url_filename(url: str) -> str:
    """Last path component of ``url``, used as the file name in the cache."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", ".."):
        raise StemforgeError(f"Cannot derive a file name from URL {url}.")
    return name


def checkpoint_path(entry: ModelEntry) -> Path:
    """Where the checkpoint of ``entry`` lives (or will live once downloaded)."""
    if entry.url is None:
        return PACKAGE_DIR / tp.cast(str, entry.weights)
    return cache_dir() / entry.name / _url_filename(entry.url)


def config_path(entry: ModelEntry) -> Path:
    """Where the YAML config of ``entry`` lives (or will live once downloaded)."""
    if _is_url(entry.config):
        return cache_dir() / entry.name / _url_filename(entry.config)
    return PACKAGE_DIR / entry.config


def is_cached(entry: ModelEntry) -> bool:
    """True when both files of ``entry`` (of every member of a bag) are on disk (not re-hashed: for listing)."""
    if entry.is_bag:
        return all(map(is_cached, bag_members(entry)))
    return checkpoint_path(entry).is_file() and config_path(entry).is_file()


# ---------------------------------------------------------------------------
# Downloading


def sha256sum(path: Path) -> str:
    """Hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, *, sha256: str | None, size: int | None = None,
             allow_unverified: bool = False, progress: bool = True,
             timeout: float = 30) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download.

    Bytes go to ``dest`` + ``.part``; an existing part file is resumed with an HTTP
    ``Range`` request. Only once the size (when known) and sha256 match is the part
    file renamed to ``dest``. A ``dest`` that already has the right checksum is
    returned without any network access (with ``allow_unverified`` and no ``sha256``,
    any existing ``dest`` is returned as is).

    Without a known ``sha256`` the download is refused unless ``allow_unverified``,
    in which case the computed sha256 of the new file is printed so it can be pinned.
    """
    dest = Path(dest)
    if sha256 is None and not allow_unverified:
        raise StemforgeError(
            f"No sha256 is known for {url}, so its integrity cannot be checked. "
            "Re-run with --allow-unverified (allow_unverified=True) to download it anyway; "
            "its sha256 will be printed so you can pin it.")
    if dest.is_file():
        if sha256 is None or sha256sum(dest) == sha256:
            return dest
        print(f"{dest} does not match its expected sha256; downloading it again.",
              file=sys.stderr)
        dest.unlink()
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _fill_part(url, part, sha256=sha256, size=size, progress=progress, timeout=timeout,
               desc=dest.name)
    actual = _check_part(url, part, sha256=sha256, size=size)
    os.replace(part, dest)
    if sha256 is None:
        _report_unverified(dest, actual)
    return dest


def _report_unverified(dest: Path, actual: str) -> None:
    print(f"WARNING: {dest.name} is unverified (no sha256 in the registry). "
          f"Its sha256 is {actual}; pin it to verify future downloads.", file=sys.stderr)


def _check_part(url: str, part: Path, *, sha256: str | None, size: int | None) -> str:
    """Verify a complete part file; delete it and raise if it is wrong."""
    if size is not None and part.stat().st_size != size:
        got = part.stat().st_size
        part.unlink()
        raise StemforgeError(f"Download of {url} has {got} bytes, expected {size}. "
                             "The partial file was deleted; re-run to download it again.")
    actual = sha256sum(part)
    if sha256 is not None and actual != sha256:
        part.unlink()
        raise StemforgeError(
            f"Checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. "
            "The download was deleted; re-run to try again, and report the URL if it "
            "keeps happening (the file on the server may have changed).")
    return actual


def _fill_part(url: str, part: Path, *, sha256: str | None, size: int | None,
               progress: bool, timeout: float, desc: str) -> None:
    """Make ``part`` hold the complete remote file, resuming when possible."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # already complete, left over from an interrupted rename
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = _open(url, headers, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing past our offset: the part should be complete. If it is not the
            # expected file after all, drop it and fetch the whole file once more.
            if sha256 is not None and sha256sum(part) != sha256:
                part.unlink()
                _fill_part(url, part, sha256=sha256, size=size, progress=progress,
                           timeout=timeout, desc=desc)
            return
        raise StemforgeError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.") from exc
    with response:
        if offset and not _resumes_at(response, offset):
            offset = 0  # server ignored or mangled the Range request: start over
        _stream(url, response, part, offset, progress=progress, desc=desc)


def _open(url: str, headers: dict[str, str], timeout: float) -> http.client.HTTPResponse:
    """Open ``url``, turning network failures into a :class:`StemforgeError`."""
    # A fresh opener picks up proxy settings from the current environment.
    opener = urllib.request.build_opener()
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StemforgeError(f"Cannot download {url}: {reason}. Check the network "
                             "connection and re-run; partial downloads resume.") from exc


def _resumes_at(response: http.client.HTTPResponse, offset: int) -> bool:
    """True if ``response`` is a 206 whose Content-Range starts at ``offset``."""
    if response.status != 206:
        return False
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return bool(match) and int(match.group(1)) == offset


def _stream(url: str, response: http.client.HTTPResponse, part: Path, offset: int, *,
            progress: bool, desc: str) -> None:
    """Append the response body to ``part`` (truncating it first if ``offset`` is 0)."""
    length = response.headers.get("Content-Length")
    expected = int(length) if length is not None and length.isdigit() else None
    total = offset + expected if expected is not None else None
    received = 0
    with open(part, "ab" if offset else "wb") as file, \
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=desc, disable=not progress, leave=False) as bar:
        try:
            while chunk := response.read(CHUNK_SIZE):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, OSError, socket.timeout) as exc:
            raise _truncated(url, part, offset + received, total, exc) from exc
    if expected is not None and received < expected:
        raise _truncated(url, part, offset + received, total, None)


def _truncated(url: str, part: Path, have: int, total: int | None,
               cause: BaseException | None) -> StemforgeError:
    of_total = f" of {total}" if total is not None else ""
    why = f" ({cause})" if cause is not None else ""
    return StemforgeError(
        f"Download of {url} was interrupted after {have}{of_total} bytes{why}. "
        f"The partial file {part} was kept: re-run the same command to resume.")


# ---------------------------------------------------------------------------
# Models


def fetch_model(name: str, *, allow_unverified: bool = False,
                progress: bool = True) -> tuple[Path, Path]:
    """Return ``(checkpoint, config)`` paths for model ``name``, downloading if needed.

    Downloaded files go to ``cache_dir()/name/``. Configs are verified when the
    registry knows their sha256; a config without one is accepted (it is plain YAML)
    but its computed sha256 is printed.
    """
    entry = get_model(name)
    if entry.is_bag:
        raise StemforgeError(f"model {name!r} is a bag of {', '.join(m.model for m in entry.members)}: "
                             "fetch each member (registry.bag_members), or load it with stemforge.Separator.")
    if entry.url is None:
        checkpoint = checkpoint_path(entry)
        if not checkpoint.is_file():
            raise StemforgeError(f"Shipped weights of model {name!r} are missing: "
                                 f"{checkpoint}. Reinstall stemforge.")
    else:
        checkpoint = download(entry.url, checkpoint_path(entry), sha256=entry.sha256,
                              size=entry.size, allow_unverified=allow_unverified,
                              progress=progress)
    config = config_path(entry)
    if _is_url(entry.config):
        config = download(entry.config, config, sha256=entry.config_sha256,
                          allow_unverified=True, progress=False)
    elif not config.is_file():
        raise StemforgeError(f"Shipped config of model {name!r} is missing: {config}. "
                             "Reinstall stemforge.")
    return checkpoint, config


def format_table(entries: tp.Iterable[ModelEntry]) -> str:
    """The table printed by ``stemforge models``."""
    header = ("NAME", "ARCH", "STEMS", "SIZE MB", "LICENCE", "CACHED")
    rows = [header]
    for entry in entries:
        networks = bag_members(entry)
        sizes = [n.size for n in networks]
        size = f"{sum(sizes) / 1e6:.0f}" if None not in sizes else "?"
        cached = "shipped" if all(n.shipped for n in networks) else ("yes" if is_cached(entry) else "no")
        rows.append((entry.name, entry.architecture, ",".join(entry.stems), size,
                     entry.licence, cached))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    return "\n".join(lines)
