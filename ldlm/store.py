"""The zarr v3 latent store: one group per encoded dataset.

Layout
    latents  (N, k, d) float32, chunked along rows
    text     (N,)      the source texts (variable-length UTF-8)
    lengths  (N,)      int32, encoder tokens per row before truncation
    done     (C,)      uint8, 1 when row chunk c is fully written (one tiny chunk each)
  with --condition-column (ldlm.conditions; the spec is the `condition` attribute):
    condition       (N,) int32 label indices, or (N, L) int32 condition token ids
    condition_text  (N,) the conditions as given (variable-length UTF-8)
Attributes (flat keys, all written in one `update_attributes` call at a time)
    ldlm_format, ldlm_version, latent_space (the autoencoder fingerprint), autoencoder
    (where it was), latent_shape [k, d], dtype, rows, chunk_rows, source, split, column,
    limit, data_digest, skipped_rows, truncated_rows, batch_size, complete, and when complete
    stats_mean / stats_std (per latent position, shape (k, d), over all rows); with conditions
    `condition` (the ConditionSpec as a dict) and condition_digest.

A store is complete only after every chunk is marked done and the statistics are written,
so an interrupted encode is never mistaken for a finished one. Chunk writes on a local
file system are atomic (zarr writes a temporary file and renames it); on an object store
(s3://, gs://, ... through fsspec) each chunk is one object, and a PUT is atomic too.

Where a store lives: a local path or any fsspec URL (`store_location`). `file://` URLs
become local paths, so the local guarantees above hold for them; `memory://` lives inside
one process; `s3://` and `gs://` need s3fs / gcsfs and read their credentials and endpoint
from the usual places (AWS_* variables and ~/.aws, AWS_ENDPOINT_URL; gcloud credentials).
Extra fsspec options come from fsspec's own configuration (FSSPEC_S3_<OPTION>=... variables
or ~/.config/fsspec/*.json).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldlm.errors import InputError, LdlmError, RuntimeFailure, first_line
from ldlm.holdout import holdout_rows  # noqa: F401  (importable from here, as before)

FORMAT = "ldlm-latent-store"
VERSION = 1
ARRAYS = ("latents", "text", "lengths", "done")


_LOCAL_SCHEMES = ("file://", "local://")
# packages that provide a protocol, as `pip install` names them, with the ldlm extra that has it
_EXTRAS = {"s3fs": "s3", "gcsfs": "gcs"}


def is_url(path: str | Path) -> bool:
    """True for a store on a non-local fsspec file system (memory://, s3://, gs://, ...)."""
    path = str(path)
    return "://" in path and not path.startswith(_LOCAL_SCHEMES)


def _protocols(url: str) -> list[str]:
    """The protocols of a URL, also of a chained one ("simplecache::s3://b/x")."""
    return [part.split("://", 1)[0] for part in url.split("::") if "://" in part]


def check_protocol(url: str) -> None:
    """Refuse a URL whose protocol fsspec does not know or whose package is not installed."""
    import fsspec
    from fsspec.registry import known_implementations

    for protocol in _protocols(url):
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as exc:
            module = known_implementations.get(protocol, {}).get("class", "")
            package = module.split(".", 1)[0]
            if not package or package == "fsspec":
                raise InputError(f"store {url!r}: {protocol}:// URLs need a package that is not "
                                 f"installed ({first_line(exc, 120)}); install it or use a local "
                                 "path") from exc
            extra = f" (or pip install 'ldlm[{_EXTRAS[package]}]')" if package in _EXTRAS else ""
            raise InputError(f"store {url!r} needs the fsspec package {package} for {protocol}:// "
                             f"URLs, which is not installed; pip install {package}{extra}") from exc
        except ValueError as exc:
            raise InputError(f"store {url!r}: fsspec knows no protocol {protocol!r}; give a local "
                             "path or a URL such as s3://bucket/latents.zarr") from exc


def store_location(path: str | Path) -> str:
    """Where a store lives, as the library opens it: a file:// URL becomes its local path
    (so that local writes stay atomic); another URL is checked (InputError when fsspec cannot
    open its protocol) and returned as it is; a path is returned as a string."""
    path = str(path)
    for scheme in _LOCAL_SCHEMES:
        if path.startswith(scheme):
            return path[len(scheme):] or "."
    if is_url(path):
        check_protocol(path)
    return path


def _access_hint(url: str) -> str:
    protocols = _protocols(url)
    if "s3" in protocols or "s3a" in protocols:
        return ("check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or "
                "~/.aws), the endpoint (AWS_ENDPOINT_URL for an S3-compatible server), the bucket "
                "and the network")
    if "gs" in protocols or "gcs" in protocols:
        return ("check the credentials (GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth "
                "application-default login`), the bucket and the network")
    return "check the URL, the credentials and the network"


@contextmanager
def _remote(path: str, action: str) -> Iterator[None]:
    """Turn a failure to reach a store at a URL into one line: a missing bucket is an
    InputError, anything else (credentials, network) a RuntimeFailure that says what to check.
    Local paths and ldlm's own errors pass through unchanged."""
    if not is_url(path):
        yield
        return
    try:
        yield
    except LdlmError:
        raise
    except FileNotFoundError as exc:  # s3fs / gcsfs: the bucket does not exist
        raise InputError(f"cannot {action} store {path!r} ({first_line(exc, 120)}); check the URL, "
                         "and create the bucket first if it is new") from exc
    except Exception as exc:
        raise RuntimeFailure(f"cannot {action} store {path!r} ({type(exc).__name__}: "
                             f"{first_line(exc, 120)}); {_access_hint(path)}") from exc


def _fs(url: str):
    """The fsspec file system of a URL and the store's root on it."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def store_exists(path: str | Path) -> bool:
    """True when something is at `path`: a non-empty folder or a file, or any object under a URL."""
    path = store_location(path)
    if is_url(path):
        with _remote(path, "reach"):
            fs, root = _fs(path)
            return bool(fs.exists(root))
    p = Path(path)
    return p.exists() and (p.is_file() or any(p.iterdir()))


def _has_group(path: str) -> bool:
    """True when `path` (local, or a URL) has a zarr.json at its root."""
    if is_url(path):
        with _remote(path, "reach"):
            fs, root = _fs(path)
            return bool(fs.exists(f"{root}/zarr.json"))
    return (Path(path) / "zarr.json").is_file()


def _zarr_group(path: str, mode: str):
    import zarr

    try:
        with _remote(path, "open"):
            return zarr.open_group(store=path, mode=mode)
    except FileNotFoundError as exc:
        raise InputError(f"store {path!r} does not exist; run `ldlm encode` to make it") from exc
    except LdlmError:
        raise
    except Exception as exc:
        first = first_line(exc)
        raise InputError(
            f"store {path!r} is not a readable zarr group ({first}); give a store written by "
            "`ldlm encode`, or rerun encode with --overwrite"
        ) from exc


def is_store(path: str | Path) -> bool:
    """True when `path` holds a zarr group with ldlm store attributes.

    A URL whose protocol cannot be opened is an InputError, and one that cannot be reached a
    RuntimeFailure, rather than False: "not a store" would hide the reason."""
    path = store_location(path)
    if not _has_group(path):
        return False
    try:
        import zarr

        return zarr.open_group(store=path, mode="r").attrs.get("ldlm_format") == FORMAT
    except Exception:  # the group's zarr.json is there (reached) but unreadable: not a store
        return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class LatentStore:
    """A handle on an ldlm latent store (see the module docstring for the layout)."""

    path: str
    group: object  # zarr.Group

    # ----- opening and creating ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, require_complete: bool = True,
             writable: bool = False) -> LatentStore:
        """Open a store; refuses anything that is not a (complete) ldlm store."""
        path = store_location(path)
        if not is_url(path) and not Path(path).exists():
            from ldlm.files import missing

            raise InputError(f"store {path!r} {missing(path)}; run `ldlm encode` to make it")
        if is_url(path) and not _has_group(path):
            if store_exists(path):
                raise InputError(f"{path!r} is not a zarr group; give a store written by `ldlm encode`")
            raise InputError(f"store {path!r} does not exist; run `ldlm encode` to make it")
        group = _zarr_group(path, "r+" if writable else "r")
        attrs = dict(group.attrs)
        if attrs.get("ldlm_format") != FORMAT:
            raise InputError(
                f"{path!r} is a zarr group but not an ldlm latent store; give a store written by "
                "`ldlm encode`"
            )
        store = cls(path, group)
        try:
            keys = set(group.array_keys())
        except Exception as exc:  # an array's zarr.json is unreadable
            raise RuntimeFailure(
                f"store {path!r} has damaged array metadata ({first_line(exc, 80)}); rerun `ldlm "
                "encode` with --overwrite to rebuild it"
            ) from exc
        missing = [name for name in ARRAYS[:3] if name not in keys]
        if missing:
            raise RuntimeFailure(
                f"store {path!r} lacks array(s) {', '.join(missing)}; rerun `ldlm encode` with "
                "the same arguments to repair it, or with --overwrite"
            )
        store._check_layout(keys)
        if require_complete and attrs.get("complete"):
            lost = store.lost_chunks()
            if lost:
                start, stop = store.chunk_bounds(lost[0])
                raise RuntimeFailure(
                    f"store {path!r} has lost the latents of rows {start}-{stop} ({len(lost)} chunk "
                    f"file(s) missing, e.g. latents/{store._chunk_key(lost[0])}); rerun `ldlm encode` "
                    "with the same arguments to re-encode them"
                )
        if require_complete and not attrs.get("complete"):
            done, total = store.progress()
            raise InputError(
                f"store {path!r} is incomplete ({done} of {total} chunks encoded): `ldlm encode` may "
                "still be writing it (wait until it finishes), or it was stopped (rerun "
                "`ldlm encode` with the same arguments to finish it)"
            )
        return store

    def _check_layout(self, keys: set[str]) -> None:
        """The attributes agree with themselves and with the arrays: a hand-edited, foreign or
        newer store is one line here, not an IndexError or rows silently dropped later."""
        a = self.attrs
        version = a.get("ldlm_version")
        if not _is_int(version) or not 1 <= version <= VERSION:
            raise InputError(f"store {self.path!r} has ldlm_version {version!r}, but this ldlm reads "
                             f"version {VERSION}; upgrade ldlm, or re-encode the data")

        def damaged(what: str) -> RuntimeFailure:
            return RuntimeFailure(f"store {self.path!r} is damaged: {what}; rerun `ldlm encode` with "
                                  "--overwrite to rebuild it")

        rows, shape, chunk_rows = a.get("rows"), a.get("latent_shape"), a.get("chunk_rows")
        if not _is_int(rows) or rows < 0:
            raise damaged(f"attribute rows is {rows!r}, not a row count")
        if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(n) and n > 0 for n in shape)):
            raise damaged(f"attribute latent_shape is {shape!r}, not [k, d]")
        if not _is_int(chunk_rows) or chunk_rows < 1:
            raise damaged(f"attribute chunk_rows is {chunk_rows!r}, not a positive count")
        if a.get("dtype", "float32") != "float32":
            raise damaged(f"attribute dtype is {a.get('dtype')!r}, but stores hold float32 latents")
        k, d = shape
        try:
            with _remote(self.path, "read"):
                arrays = {name: self.group[name] for name in keys & {*ARRAYS, "condition", "condition_text"}}
                shapes = {name: tuple(arr.shape) for name, arr in arrays.items()}
                latent_chunks = tuple(arrays["latents"].chunks)
        except LdlmError:
            raise
        except Exception as exc:
            raise damaged(f"an array's metadata cannot be read ({first_line(exc, 80)})") from exc
        want = {"latents": (rows, k, d), "text": (rows,), "lengths": (rows,),
                "done": (-(-rows // chunk_rows),)}
        for name, have in shapes.items():
            expected = want.get(name)
            if expected is None:  # the condition arrays: one row per row
                expected = (rows, *have[1:])
            if have != expected:
                raise damaged(f"its {name!r} array has shape {list(have)}, but its attributes say rows "
                              f"{rows}, latent_shape {shape} and chunk_rows {chunk_rows} "
                              f"(expected {list(expected)})")
        if latent_chunks[0] != chunk_rows:
            raise damaged(f"its latents are chunked by {latent_chunks[0]} rows, but attribute chunk_rows "
                          f"says {chunk_rows}")
        if a.get("complete"):
            for name in ("stats_mean", "stats_std"):
                values = a.get(name)
                try:
                    x = np.asarray(values, dtype=np.float64)
                except (TypeError, ValueError):
                    raise damaged(f"attribute {name} is not a list of numbers") from None
                if x.shape != (k * d,) or not np.isfinite(x).all() or (name == "stats_std" and (x < 0).any()):
                    raise damaged(f"attribute {name} is not {k * d} finite numbers (one per latent value "
                                  f"of shape {shape})")

    @classmethod
    def create(cls, path: str | Path, *, rows: int, latent_shape: tuple[int, int],
               chunk_rows: int, attributes: dict) -> LatentStore:
        """Create an empty store of `rows` rows (replacing whatever ldlm store is there)."""
        import zarr

        path = store_location(path)
        remove_store(path)
        k, d = latent_shape
        attrs = {
            "ldlm_format": FORMAT, "ldlm_version": VERSION, "rows": rows,
            "latent_shape": [k, d], "dtype": "float32", "chunk_rows": chunk_rows,
            "complete": False, **attributes,
        }
        with _remote(path, "create"):
            group = zarr.open_group(store=path, mode="w", attributes=attrs)
            store = cls(path, group)
            store.ensure_arrays()
        return store

    def ensure_arrays(self) -> None:
        """Create any array that is missing (after a kill during creation)."""
        a = self.attrs
        n, (k, d), c = a["rows"], a["latent_shape"], a["chunk_rows"]
        have = set(self.group.array_keys())
        specs = {
            # float latents barely compress (zstd saves ~7%) and compressing costs CPU that the
            # encoder needs on small machines: stored raw
            "latents": dict(shape=(n, k, d), chunks=(c, k, d), dtype="float32", fill_value=0.0,
                            compressors=None),
            "text": dict(shape=(n,), chunks=(c,), dtype=str, fill_value=""),
            "lengths": dict(shape=(n,), chunks=(c,), dtype="int32", fill_value=0),
            "done": dict(shape=(self.num_chunks,), chunks=(1,), dtype="uint8", fill_value=0),
        }
        spec = a.get("condition")
        if spec:
            length = int(spec.get("max_length") or 0) if spec.get("type") == "text" else 0
            shape, chunks = ((n, length), (c, length)) if length else ((n,), (c,))
            specs["condition"] = dict(shape=shape, chunks=chunks, dtype="int32", fill_value=0)
            specs["condition_text"] = dict(shape=(n,), chunks=(c,), dtype=str, fill_value="")
        for name, spec in specs.items():
            if name not in have:
                self.group.create_array(name, **spec)

    # ----- attributes -------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    def update_attributes(self, values: dict) -> None:
        with _remote(self.path, "write to"):
            self.group.update_attributes(values)

    @property
    def rows(self) -> int:
        return int(self.attrs["rows"])

    @property
    def latent_shape(self) -> tuple[int, int]:
        k, d = self.attrs["latent_shape"]
        return int(k), int(d)

    @property
    def latent_space(self) -> str | None:
        return self.attrs.get("latent_space")

    @property
    def chunk_rows(self) -> int:
        return int(self.attrs["chunk_rows"])

    @property
    def num_chunks(self) -> int:
        return -(-self.rows // self.chunk_rows)

    @property
    def complete(self) -> bool:
        """Marked complete, and every chunk's latents still in storage."""
        return bool(self.attrs.get("complete")) and not self.lost_chunks()

    @property
    def content_id(self) -> dict:
        """What identifies the latents a store holds, for a checkpoint to be resumed on the same
        ones: the row count and a hash of the statistics (over every latent)."""
        a = self.attrs
        stats = json.dumps([a.get("stats_mean"), a.get("stats_std")]).encode()
        return {"rows": self.rows, "stats": hashlib.sha256(stats).hexdigest()[:16]}

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-position mean and std of the latents, each (k, d)."""
        a = self.attrs
        if "stats_mean" not in a:
            raise InputError(f"store {self.path!r} has no statistics yet; finish `ldlm encode`")
        shape = self.latent_shape
        return (np.asarray(a["stats_mean"], np.float32).reshape(shape),
                np.asarray(a["stats_std"], np.float32).reshape(shape))

    # ----- arrays -----------------------------------------------------------------------
    def array(self, name: str):
        return self.group[name]

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.rows)

    def _done_flags(self) -> np.ndarray:
        """The `done` array as a boolean mask (C,)."""
        with _remote(self.path, "read"):
            if "done" not in self.group.array_keys():
                return np.zeros(self.num_chunks, dtype=bool)
            return self.group["done"][:].astype(bool)

    def _chunk_key(self, chunk: int) -> str:
        """The storage key of row chunk `chunk` of the latents, relative to the array ("c/3/0/0")."""
        return self.group["latents"].metadata.encode_chunk_key((chunk, 0, 0))

    def _stored_latent_chunks(self) -> set[str]:
        """The keys of the latents chunks that are in storage, relative to the array."""
        if is_url(self.path):
            with _remote(self.path, "read"):
                fs, root = _fs(self.path)
                prefix = f"{root}/latents/"
                return {key[len(prefix):] for key in fs.find(prefix)}
        base = Path(self.path) / "latents"
        return {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}

    def _in_storage(self, done: np.ndarray) -> np.ndarray:
        """Of the chunks in mask `done`, those whose latents are in storage (zarr reads a deleted
        chunk file as zeros, so the `done` flag alone does not say it)."""
        kept = done.copy()
        if done.any():
            stored = self._stored_latent_chunks()
            key = self.group["latents"].metadata.encode_chunk_key
            for chunk in np.flatnonzero(done):
                kept[chunk] = key((int(chunk), 0, 0)) in stored
        return kept

    def lost_chunks(self) -> list[int]:
        """Chunks marked done whose latents are no longer in storage: `ldlm encode` redoes them."""
        done = self._done_flags()
        return [int(c) for c in np.flatnonzero(done & ~self._in_storage(done))]

    def done_chunks(self) -> np.ndarray:
        """Boolean mask (C,) of chunks whose rows are all written (and still in storage)."""
        return self._in_storage(self._done_flags())

    def progress(self) -> tuple[int, int]:
        return int(self.done_chunks().sum()), self.num_chunks

    @property
    def condition_spec(self):
        """The ConditionSpec of a store encoded with --condition-column, else None."""
        from ldlm.conditions import ConditionSpec

        spec = self.attrs.get("condition")
        return ConditionSpec.from_dict(spec) if spec else None

    def read_conditions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Encoded conditions of rows [start, stop): (n,) or (n, L) int32."""
        return self.group["condition"][start : self.rows if stop is None else stop]

    def read_condition_texts(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [str(t) for t in self.group["condition_text"][start : self.rows if stop is None else stop]]

    def write_chunk(self, chunk: int, latents: np.ndarray, texts: list[str],
                    lengths: np.ndarray, conditions: np.ndarray | None = None,
                    condition_texts: list[str] | None = None) -> None:
        """Write one whole row chunk, then mark it done (a kill in between redoes it)."""
        start, stop = self.chunk_bounds(chunk)
        if latents.shape != (stop - start, *self.latent_shape):
            raise ValueError(f"chunk {chunk} expects {(stop - start, *self.latent_shape)}, "
                             f"got {latents.shape}")
        with _remote(self.path, "write to"):
            # every latents chunk is stored, even an all-zero one, so that a missing file means lost
            latent_array = self.group["latents"].with_config({"write_empty_chunks": True})
            latent_array[start:stop] = latents.astype(np.float32, copy=False)
            self.group["text"][start:stop] = np.array(texts, dtype=object)
            self.group["lengths"][start:stop] = lengths.astype(np.int32, copy=False)
            if conditions is not None:
                self.group["condition"][start:stop] = conditions.astype(np.int32, copy=False)
                self.group["condition_text"][start:stop] = np.array(condition_texts, dtype=object)
            self.group["done"][chunk] = 1  # last: a chunk is done only once all of it is written

    def _read(self, name: str, start: int, stop: int | None):
        """Rows [start, stop) of array `name`; a damaged array is a one-line RuntimeFailure."""
        try:
            return self.group[name][start : self.rows if stop is None else stop]
        except LdlmError:
            raise
        except Exception as exc:
            rows = f"{start}-{self.rows if stop is None else stop}"
            if is_url(self.path):  # a network or credentials failure looks the same from here
                raise RuntimeFailure(
                    f"cannot read {name!r} rows {rows} of store {self.path!r} ({type(exc).__name__}: "
                    f"{first_line(exc, 80)}); {_access_hint(self.path)}; if it persists, rerun "
                    "`ldlm encode` with --overwrite"
                ) from exc
            raise RuntimeFailure(
                f"store {self.path!r} has a damaged {name!r} array near rows {rows} "
                f"({first_line(exc, 80)}); rerun `ldlm encode` with --overwrite to rebuild it"
            ) from exc

    def read_latents(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Latents of rows [start, stop), (n, k, d); NaN or inf in them is a RuntimeFailure (a
        damaged chunk would otherwise decode to empty texts and train to a NaN loss)."""
        x = self._read("latents", start, stop)
        finite = np.isfinite(x).all(axis=(1, 2)) if x.ndim == 3 else np.isfinite(x)
        if not finite.all():
            bad = start + int(np.argmin(finite))
            raise RuntimeFailure(
                f"store {self.path!r} holds NaN or inf latents (row {bad}); rerun `ldlm encode` with "
                "--overwrite to rebuild it (if encoding made them, the autoencoder is broken: "
                "retrain it)"
            )
        return x

    def read_texts(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [str(t) for t in self._read("text", start, stop)]

    @staticmethod
    def chunk_sums(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float64 sum and sum of squares over rows of one chunk, each (k, d)."""
        x = latents.astype(np.float64)
        return x.sum(0), (x * x).sum(0)

    def compute_stats(self, known: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Per-position mean/std over all rows: a streaming pass over the chunks.

        `known` holds `chunk_sums` of chunks the caller has just written, which are then not
        read back; sums are added in chunk order either way, so the result is the same bits.
        """
        k, d = self.latent_shape
        total = np.zeros((k, d), np.float64)
        total_sq = np.zeros((k, d), np.float64)
        for chunk in range(self.num_chunks):
            if known and chunk in known:
                s, sq = known[chunk]
            else:
                start, stop = self.chunk_bounds(chunk)
                s, sq = self.chunk_sums(self.read_latents(start, stop))
            if not (np.isfinite(s).all() and np.isfinite(sq).all()):
                start, stop = self.chunk_bounds(chunk)
                raise RuntimeFailure(
                    f"store {self.path!r} has NaN or inf latents in rows {start}-{stop}; the "
                    "autoencoder is broken, retrain it or rerun encode with --overwrite"
                )
            total += s
            total_sq += sq
        mean = total / self.rows
        var = np.maximum(total_sq / self.rows - mean * mean, 0.0)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)

    def finalize(self, known: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        """Compute the statistics and mark the store complete (one attribute update)."""
        mean, std = self.compute_stats(known)
        self.update_attributes({
            "stats_mean": mean.ravel().tolist(),
            "stats_std": std.ravel().tolist(),
            "complete": True,
        })


def remove_store(path: str) -> None:
    """Delete an existing store at `path`, refusing to delete anything that is not zarr."""
    path = store_location(path)
    if is_url(path):
        with _remote(path, "replace"):
            fs, root = _fs(path)
            if fs.exists(root):
                if not fs.exists(f"{root}/zarr.json"):
                    raise InputError(f"{path!r} exists and is not a zarr store; refusing to replace "
                                     "it (choose another --store)")
                fs.rm(root, recursive=True)
        return
    p = Path(path)
    if not p.exists():
        return
    check_replaceable(path)
    shutil.rmtree(p)


def check_replaceable(path: str) -> None:
    """Refuse (InputError) to replace what is at local `path` unless it is a zarr store or an
    empty folder: --overwrite never deletes anything else."""
    p = Path(path)
    if p.exists() and (p.is_file() or not ((p / "zarr.json").is_file() or not any(p.iterdir()))):
        raise InputError(
            f"{path!r} exists and is not a zarr store; refusing to replace it (choose another --store)"
        )
