"""Python binding for optin-telemetry over ctypes.

Loads the cdylib by full path (Python 3.8+ on Windows ignores PATH for DLL
dependencies): from ``load(path)``, the ``OPTIN_TELEMETRY_LIB`` environment
variable, or the cargo target directory of this checkout.

Every function gets ``argtypes`` and ``restype``, on whatever library object a
``Client`` is given (a plain ``ctypes.CDLL`` included): without them ctypes
passes every int as a C ``int`` and takes every result as one. Strings the
library returns are received as ``c_void_p`` (``c_char_p`` would copy and leak
them), copied with ``string_at`` and freed with ``tel_string_free``.

Arguments are checked before the call, never converted: consent and bool
values must be ``bool`` (``"no"``, ``0``/``1`` and ``None`` are a ``TypeError``:
Python's truthiness would turn ``"no"`` into a yes); counts, times and timeouts
must be ``int`` within their C type (an ``OverflowError`` instead of ctypes'
silent wrapping); a string holding a NUL is a ``ValueError`` (C would see only
the part before it).

Threads: every method may be called from any thread at the same time as any
other, ``close()`` included. ``close()`` refuses new calls, waits for calls in
flight to finish, then frees the native client once; it is idempotent, and
every caller returns only after the client is freed. A call after ``close()``
raises ``ClientClosedError``.
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
import sys
import threading
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Any, Mapping, Optional, Union

__all__ = ["Client", "ClientClosedError", "Consent", "TelemetryError", "load", "library_path", "ERRORS"]

TEL_OK = 0
ERRORS = {
    1: "NULL_ARGUMENT",
    2: "INVALID_UTF8",
    3: "INVALID_ARGUMENT",
    4: "CONFIG",
    5: "IO",
    6: "INTERNAL",
    7: "MALFORMED_JSON",
    8: "UNKNOWN_FIELD",
    9: "WRONG_TYPE",
    10: "VALUE_NOT_ALLOWED",
    11: "TOO_LARGE",
    12: "TIMEOUT",
}
for _code, _name in ERRORS.items():
    globals()["TEL_ERR_" + _name] = _code


class Consent(enum.IntEnum):
    UNDECIDED = 0
    GRANTED = 1
    DENIED = 2
    OUTDATED = 3


class TelemetryError(Exception):
    """A call failed: ``code`` is the tel_result, ``message`` the library's text."""

    def __init__(self, code: int, message: str, function: str = ""):
        self.code = code
        self.name = ERRORS.get(code, "UNKNOWN")
        self.message = message
        super().__init__(f"{function}: TEL_ERR_{self.name} ({code}): {message}")


class ClientClosedError(ValueError):
    """A call on a Client after close() (a ValueError, as for a closed file)."""

    def __init__(self, function: str = ""):
        super().__init__(f"{function}: the optin_telemetry client is closed" if function else "the optin_telemetry client is closed")


_SIGNATURES = {
    "tel_open": (c_int32, [c_char_p, POINTER(c_void_p)]),
    "tel_close": (None, [c_void_p]),
    "tel_set_consent": (c_int32, [c_void_p, c_int32]),
    "tel_get_consent": (c_int32, [c_void_p, POINTER(c_uint32)]),
    "tel_set_bool": (c_int32, [c_void_p, c_char_p, c_int32]),
    "tel_set_count": (c_int32, [c_void_p, c_char_p, c_uint64]),
    "tel_set_choice": (c_int32, [c_void_p, c_char_p, c_char_p]),
    "tel_set_values_json": (c_int32, [c_void_p, c_char_p]),
    "tel_preview_json": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "tel_describe_json": (c_int32, [c_void_p, c_char_p, POINTER(c_void_p)]),
    "tel_tick": (c_int32, [c_void_p]),
    "tel_tick_at": (c_int32, [c_void_p, c_int64]),
    "tel_flush": (c_int32, [c_void_p, c_uint32]),
    "tel_status_json": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "tel_history_json": (c_int32, [c_void_p, POINTER(c_void_p)]),
    "tel_clear_history": (c_int32, [c_void_p]),
    "tel_string_free": (None, [c_void_p]),
    "tel_last_error_message": (c_void_p, []),
    "tel_version": (c_void_p, []),
}

_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()


def library_path() -> Path:
    """Where the cdylib is looked for when no path is given."""
    env = os.environ.get("OPTIN_TELEMETRY_LIB")
    if env:
        return Path(env).resolve()
    name = {"win32": "optin_telemetry.dll", "darwin": "liboptin_telemetry.dylib"}.get(sys.platform, "liboptin_telemetry.so")
    root = Path(__file__).resolve().parents[3]
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    # The most recently built profile: a stale release build must not shadow
    # the debug build just made (or the other way round).
    built = [p for p in (target / "release" / name, target / "debug" / name) if p.exists()]
    if built:
        return max(built, key=lambda p: p.stat().st_mtime)
    return target / "debug" / name


def load(path: Union[str, Path, None] = None) -> ctypes.CDLL:
    """Loads (once) and returns the library with every signature declared."""
    global _lib
    with _lib_lock:
        if _lib is None or path is not None:
            _lib = declare(ctypes.CDLL(str(Path(path).resolve() if path else library_path())))
        return _lib


_DECLARED = "_optin_telemetry_declared"


def declare(lib):
    """Declares every signature on ``lib`` (e.g. a plain ``ctypes.CDLL``) and returns it."""
    if not getattr(lib, _DECLARED, False):
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        setattr(lib, _DECLARED, True)
    return lib


def last_error(lib: Optional[ctypes.CDLL] = None) -> str:
    lib = declare(lib) if lib is not None else load()
    return ctypes.string_at(lib.tel_last_error_message()).decode("utf-8")


def version(lib: Optional[ctypes.CDLL] = None) -> str:
    lib = declare(lib) if lib is not None else load()
    return ctypes.string_at(lib.tel_version()).decode("utf-8")


def take_string(lib: ctypes.CDLL, ptr: c_void_p) -> str:
    """Copies a library-owned string and frees it."""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        lib.tel_string_free(ptr)


def _encode(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    if "\0" in s:
        # C would stop at the NUL: "standard\0evil" would be stored as "standard".
        raise ValueError(f"{what} contains a NUL character")
    return s.encode("utf-8")


def _bool(value: Any, what: str) -> int:
    # Only a real bool: "no", "false", 2 and None are all truthy or falsy by
    # accident, and a consent must never become a yes that way.
    if type(value) is not bool:
        raise TypeError(f"{what} must be True or False, not {type(value).__name__} {value!r}")
    return 1 if value else 0


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise OverflowError(f"{what} must be between {lo} and {hi}, got {value}")
    return value


_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)


class Client:
    """An open telemetry client; use as a context manager or call close()."""

    def __init__(self, config: Union[Mapping[str, Any], str], lib: Optional[ctypes.CDLL] = None):
        self._cv = threading.Condition(threading.Lock())
        self._calls = 0  # calls in flight on the native client
        self._closed = False  # set by the first close(): no new calls
        self._freed = True  # tel_close has returned (or there was nothing to free)
        self._handle = c_void_p()
        self._lib = declare(lib) if lib is not None else load()
        text = config if isinstance(config, str) else json.dumps(config)
        handle = c_void_p()
        rc = self._lib.tel_open(_encode(text, "config"), ctypes.byref(handle))
        if rc != TEL_OK:
            raise TelemetryError(rc, last_error(self._lib), "tel_open")
        self._handle = handle
        self._freed = False

    # -- plumbing --
    def _check(self, function: str, rc: int) -> None:
        if rc != TEL_OK:
            # Read on this thread, right after the call (a thread-local message).
            raise TelemetryError(rc, last_error(self._lib), function)

    def _call(self, function: str, *args) -> int:
        """Calls ``function(handle, *args)`` while holding a share of the client:
        close() waits until every such call has returned."""
        with self._cv:
            if self._closed:
                raise ClientClosedError(function)
            self._calls += 1
            handle = self._handle
        try:
            return getattr(self._lib, function)(handle, *args)
        finally:
            with self._cv:
                self._calls -= 1
                if self._calls == 0:
                    self._cv.notify_all()

    def _run(self, function: str, *args) -> None:
        self._check(function, self._call(function, *args))

    def _out(self, function: str, *args) -> str:
        out = c_void_p()
        self._check(function, self._call(function, *args, ctypes.byref(out)))
        return take_string(self._lib, out)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Frees the native client once calls in flight have finished. Safe to
        call more than once and from several threads: each returns after the
        client is freed. tel_close gives a send in flight up to 3 seconds."""
        cv = getattr(self, "_cv", None)
        if cv is None:  # __init__ failed before the guard existed
            return
        with cv:
            if self._closed:
                while not self._freed:
                    cv.wait()
                return
            self._closed = True
            while self._calls:
                cv.wait()
            handle, self._handle = self._handle, c_void_p()
        try:
            if handle:
                self._lib.tel_close(handle)
        finally:
            with cv:
                self._freed = True
                cv.notify_all()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- consent --
    def set_consent(self, granted: bool) -> None:
        """Records the user's answer: exactly True (yes) or False (no)."""
        self._run("tel_set_consent", _bool(granted, "granted"))

    @property
    def consent(self) -> Consent:
        out = c_uint32()
        self._run("tel_get_consent", ctypes.byref(out))
        return Consent(out.value)

    # -- values --
    def set_bool(self, field: str, value: bool) -> None:
        self._run("tel_set_bool", _encode(field, "field"), _bool(value, f'field "{field}"'))

    def set_count(self, field: str, value: int) -> None:
        # c_uint64 would silently wrap -5 to 2**64-5: refuse it here, with the
        # library's code for the same mistake made through set_values().
        if isinstance(value, bool) or not isinstance(value, int):
            raise TelemetryError(9, f'field "{field}": expected a non-negative integer, got {type(value).__name__}', "tel_set_count")
        if not 0 <= value < 2**64:
            raise TelemetryError(10, f'field "{field}": a count must be between 0 and 2**64-1, got {value}', "tel_set_count")
        self._run("tel_set_count", _encode(field, "field"), value)

    def set_choice(self, field: str, value: str) -> None:
        self._run("tel_set_choice", _encode(field, "field"), _encode(value, f'field "{field}" value'))

    def set_values(self, values: Union[Mapping[str, Any], str]) -> None:
        text = values if isinstance(values, str) else json.dumps(values)
        self._run("tel_set_values_json", _encode(text, "values"))

    # -- what the user sees --
    def preview(self) -> str:
        """The exact text of the next report."""
        return self._out("tel_preview_json")

    def describe(self, language: Optional[str] = "en") -> dict:
        return json.loads(self._out("tel_describe_json", None if language is None else _encode(language, "language")))

    def status(self) -> dict:
        return json.loads(self._out("tel_status_json"))

    def history(self) -> dict:
        return json.loads(self._out("tel_history_json"))

    def clear_history(self) -> None:
        self._run("tel_clear_history")

    # -- sending --
    def tick(self, now: Optional[int] = None) -> None:
        """Lets the library act on its schedule; ``now`` (unix seconds, a
        signed 64-bit int) for tests and simulations."""
        if now is None:
            self._run("tel_tick")
        else:
            self._run("tel_tick_at", _int(now, "now", *_INT64))

    def flush(self, timeout_ms: int = 10_000) -> None:
        self._run("tel_flush", _int(timeout_ms, "timeout_ms", *_UINT32))
