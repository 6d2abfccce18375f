"""Python binding for optin-telemetry over ctypes.

Loads the cdylib by full path (Python 3.8+ on Windows ignores PATH for DLL
dependencies): from ``load(path)``, the ``OPTIN_TELEMETRY_LIB`` environment
variable, or the cargo target directory of this checkout.

Every function has ``argtypes`` and ``restype``. Strings the library returns are
received as ``c_void_p`` (``c_char_p`` would copy and leak them), copied with
``string_at`` and freed with ``tel_string_free``.
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

__all__ = ["Client", "Consent", "TelemetryError", "load", "library_path", "ERRORS"]

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


def _bundled_library() -> Optional[Path]:
    """The native library a wheel carries beside this module (optin_telemetry/_native/),
    or None in a checkout. Kept separate so packaging concerns stay out of library_path."""
    name = {"win32": "optin_telemetry.dll", "darwin": "liboptin_telemetry.dylib"}.get(sys.platform, "liboptin_telemetry.so")
    path = Path(__file__).resolve().parent / "_native" / name
    return path if path.is_file() else None


def library_path() -> Path:
    """Where the cdylib is looked for when no path is given."""
    env = os.environ.get("OPTIN_TELEMETRY_LIB")
    if env:
        return Path(env).resolve()
    bundled = _bundled_library()
    if bundled:
        return bundled
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
            lib = ctypes.CDLL(str(Path(path).resolve() if path else library_path()))
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype = restype
                fn.argtypes = argtypes
            _lib = lib
        return _lib


def last_error(lib: Optional[ctypes.CDLL] = None) -> str:
    lib = lib or load()
    return ctypes.string_at(lib.tel_last_error_message()).decode("utf-8")


def version(lib: Optional[ctypes.CDLL] = None) -> str:
    lib = lib or load()
    return ctypes.string_at(lib.tel_version()).decode("utf-8")


def take_string(lib: ctypes.CDLL, ptr: c_void_p) -> str:
    """Copies a library-owned string and frees it."""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        lib.tel_string_free(ptr)


def _encode(s: str) -> bytes:
    return s.encode("utf-8")


class Client:
    """An open telemetry client; use as a context manager or call close()."""

    def __init__(self, config: Union[Mapping[str, Any], str], lib: Optional[ctypes.CDLL] = None):
        self._lib = lib or load()
        self._handle = c_void_p()
        text = config if isinstance(config, str) else json.dumps(config)
        self._check("tel_open", self._lib.tel_open(_encode(text), ctypes.byref(self._handle)))

    # -- plumbing --
    def _check(self, function: str, rc: int) -> None:
        if rc != TEL_OK:
            raise TelemetryError(rc, last_error(self._lib), function)

    def _h(self) -> c_void_p:
        if not self._handle:
            raise ValueError("client is closed")
        return self._handle

    def _out(self, function: str, *args) -> str:
        out = c_void_p()
        self._check(function, getattr(self._lib, function)(self._h(), *args, ctypes.byref(out)))
        return take_string(self._lib, out)

    def close(self) -> None:
        if self._handle:
            self._lib.tel_close(self._handle)
            self._handle = c_void_p()

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
        self._check("tel_set_consent", self._lib.tel_set_consent(self._h(), 1 if granted else 0))

    @property
    def consent(self) -> Consent:
        out = c_uint32()
        self._check("tel_get_consent", self._lib.tel_get_consent(self._h(), ctypes.byref(out)))
        return Consent(out.value)

    # -- values --
    def set_bool(self, field: str, value: bool) -> None:
        self._check("tel_set_bool", self._lib.tel_set_bool(self._h(), _encode(field), 1 if value else 0))

    def set_count(self, field: str, value: int) -> None:
        # c_uint64 would silently wrap -5 to 2**64-5: refuse it here, with the
        # library's code for the same mistake made through set_values().
        if isinstance(value, bool) or not isinstance(value, int):
            raise TelemetryError(9, f'field "{field}": expected a non-negative integer, got {type(value).__name__}', "tel_set_count")
        if not 0 <= value < 2**64:
            raise TelemetryError(10, f'field "{field}": a count must be between 0 and 2**64-1, got {value}', "tel_set_count")
        self._check("tel_set_count", self._lib.tel_set_count(self._h(), _encode(field), value))

    def set_choice(self, field: str, value: str) -> None:
        self._check("tel_set_choice", self._lib.tel_set_choice(self._h(), _encode(field), _encode(value)))

    def set_values(self, values: Union[Mapping[str, Any], str]) -> None:
        text = values if isinstance(values, str) else json.dumps(values)
        self._check("tel_set_values_json", self._lib.tel_set_values_json(self._h(), _encode(text)))

    # -- what the user sees --
    def preview(self) -> str:
        """The exact text of the next report."""
        return self._out("tel_preview_json")

    def describe(self, language: Optional[str] = "en") -> dict:
        return json.loads(self._out("tel_describe_json", None if language is None else _encode(language)))

    def status(self) -> dict:
        return json.loads(self._out("tel_status_json"))

    def history(self) -> dict:
        return json.loads(self._out("tel_history_json"))

    def clear_history(self) -> None:
        self._check("tel_clear_history", self._lib.tel_clear_history(self._h()))

    # -- sending --
    def tick(self, now: Optional[int] = None) -> None:
        if now is None:
            self._check("tel_tick", self._lib.tel_tick(self._h()))
        else:
            self._check("tel_tick_at", self._lib.tel_tick_at(self._h(), now))

    def flush(self, timeout_ms: int = 10_000) -> None:
        self._check("tel_flush", self._lib.tel_flush(self._h(), timeout_ms))
