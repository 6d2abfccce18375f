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
every caller returns only after the client is freed -- except a ``close()``
run re-entrantly on a thread that is inside a call on the same client (a
signal handler, a finalizer): it cannot wait for that call, so it returns at
once and the call frees the client as it returns. A call after ``close()``
raises ``ClientClosedError``. In a child made by ``os.fork()`` a client
opened before the fork is closed (calls raise ``ClientClosedError``,
``close()`` returns at once and frees nothing): open a new one there.
"""

from __future__ import annotations

import ctypes
import enum
import json
import operator
import os
import sys
import threading
import weakref
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

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

    def __init__(self, function: str = "", reason: str = ""):
        text = "the optin_telemetry client is closed" + (f" ({reason})" if reason else "")
        super().__init__(f"{function}: {text}" if function else text)


_FORKED = "it was opened before os.fork(): open a new Client in this process"


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
            _lib = declare(ctypes.CDLL(str(Path(path).resolve() if path else library_path())))
        return _lib


_DECLARED = "_optin_telemetry_declared"


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
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
        if ptr.value is None:  # never on success; a NULL must not reach string_at
            raise TelemetryError(6, "the library returned no string (NULL)", "take_string")
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        lib.tel_string_free(ptr)


def _encode(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    # The plain str behind a subclass: its own __contains__ or encode could
    # hide a NUL or hand C other bytes than the text that was checked.
    s = str.__str__(s)
    if "\0" in s:
        # C would stop at the NUL: "standard\0evil" would be stored as "standard".
        raise ValueError(f"{what} contains a NUL character")
    return str.encode(s, "utf-8")


def _bool(value: Any, what: str) -> int:
    # Only a real bool: "no", "false", 2 and None are all truthy or falsy by
    # accident, and a consent must never become a yes that way.
    if type(value) is not bool:
        raise TypeError(f"{what} must be True or False, not {type(value).__name__} {value!r}")
    return 1 if value else 0


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    # The plain int behind a subclass (an IntEnum, or one whose comparisons
    # lie): ctypes passes that stored value, so that is what is checked.
    plain = operator.index(value)
    if not lo <= plain <= hi:
        raise OverflowError(f"{what} must be between {lo} and {hi}, got {plain}")
    return plain


_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)


_open_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_open_clients):
        client._forget()
    _open_clients.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """An open telemetry client; use as a context manager or call close().

    ``config`` is the ``tel_open`` configuration (a mapping or JSON text; see
    the README): ``product``, ``product_version``, ``endpoint``, ``state_dir``,
    ``schema`` and optional keys. ``product_version`` is 1 to 4 dot-separated
    decimal numbers of 1 to 5 digits each (``"24.1.3"``, ``"10.2.1.21234"``),
    nothing else; any other value (``"1.2-beta"``, ``"1.234567"``, ``""``)
    raises ``TelemetryError`` with code ``TEL_ERR_CONFIG``.
    """

    def __init__(self, config: Union[Mapping[str, Any], str], lib: Optional[ctypes.CDLL] = None):
        # An RLock: close() may run re-entrantly on a thread that is inside
        # this client's own plumbing (a signal handler, a finalizer run by the
        # garbage collector); a plain Lock would deadlock there.
        self._cv = threading.Condition(threading.RLock())
        self._calls = 0  # calls in flight on the native client
        self._mine: Dict[int, int] = {}  # thread ident -> its calls in flight
        # Closed until tel_open succeeds: a Client whose open failed (reached
        # through __new__ or a subclass) refuses calls with ClientClosedError.
        self._closed = True  # set by the first close(): no new calls
        self._freer: Optional[int] = None  # the thread that took the handle to free it
        self._freed = True  # tel_close has returned (or there was nothing to free)
        self._forked = False  # this is a forked child's copy (see _after_fork_in_child)
        self._handle = c_void_p()
        self._lib = declare(lib) if lib is not None else load()
        text = config if isinstance(config, str) else json.dumps(config)
        handle = c_void_p()
        rc = self._lib.tel_open(_encode(text, "config"), ctypes.byref(handle))
        if rc != TEL_OK:
            raise TelemetryError(rc, last_error(self._lib), "tel_open")
        self._handle = handle
        self._freed = False
        self._closed = False
        _open_clients.add(self)

    # -- plumbing --
    def _check(self, function: str, rc: int) -> None:
        if rc != TEL_OK:
            # Read on this thread, right after the call (a thread-local message).
            raise TelemetryError(rc, last_error(self._lib), function)

    def _call(self, function: str, *args: Any) -> int:
        """Calls ``function(handle, *args)`` while holding a share of the client:
        close() waits until every such call has returned."""
        me = threading.get_ident()
        with self._cv:
            # Registered before the check, in this order: a close() run
            # re-entrantly on this thread at any point (signal handler,
            # finalizer) sees this call and defers instead of waiting for it.
            self._mine[me] = self._mine.get(me, 0) + 1
            self._calls += 1
            try:
                if self._closed:
                    raise ClientClosedError(function, _FORKED if self._forked else "")
                handle = self._handle
            except BaseException:
                self._leave(me)
                raise
        try:
            rc: int = getattr(self._lib, function)(handle, *args)
            return rc
        finally:
            self._leave(me)

    def _leave(self, me: int) -> None:
        with self._cv:
            if me not in self._mine:  # the share was dropped by a fork (see _forget)
                return
            # _calls first: a re-entrant close() between the two lines still
            # sees this thread's share and defers.
            self._calls -= 1
            n = self._mine[me] - 1
            if n:
                self._mine[me] = n
            else:
                del self._mine[me]
            if self._calls:
                return
            self._cv.notify_all()
            # The last call out frees a client closed meanwhile: a close()
            # that could not wait (it ran on a thread inside a call) relies on it.
            handle = self._take() if self._closed else None
        if handle is not None:
            self._free(handle)

    def _take(self) -> Optional[c_void_p]:
        """Under the lock: the handle to free, once; None if already taken."""
        if self._freer is not None or self._freed:
            return None
        self._freer = threading.get_ident()
        handle, self._handle = self._handle, c_void_p()
        return handle

    def _free(self, handle: c_void_p) -> None:
        try:
            if handle:
                self._lib.tel_close(handle)
        finally:
            with self._cv:
                self._freed = True
                self._cv.notify_all()

    def _run(self, function: str, *args: Any) -> None:
        self._check(function, self._call(function, *args))

    def _out(self, function: str, *args: Any) -> str:
        out = c_void_p()
        self._check(function, self._call(function, *args, ctypes.byref(out)))
        return take_string(self._lib, out)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Frees the native client once calls in flight have finished. Safe to
        call more than once and from several threads: each returns after the
        client is freed. tel_close interrupts a send in flight (retried later).

        Called on a thread that is itself inside a call on this client (from a
        signal handler or a finalizer), it cannot wait for that call: it
        refuses new calls and returns, and the call, when it returns, frees
        the client."""
        cv = getattr(self, "_cv", None)
        if cv is None:  # __init__ failed before the guard existed
            return
        me = threading.get_ident()
        with cv:
            self._closed = True
            if self._mine.get(me) or self._freer == me:
                return
            while self._calls:
                cv.wait()
            handle = self._take()
            if handle is None:
                while not self._freed:
                    cv.wait()
                return
        self._free(handle)

    def _forget(self) -> None:
        """In a forked child: the parent's client is not this process's to
        use or free. Threads that were inside calls at fork() do not exist
        here, so their shares would make close() wait forever, and the lock
        may be held by one of them: a fresh lock, no calls in flight, closed
        without tel_close (the native client, its threads and locks belong
        to the parent)."""
        self._cv = threading.Condition(threading.RLock())
        self._calls = 0
        self._mine = {}
        self._closed = True
        self._forked = True
        self._freer = None
        self._freed = True
        self._handle = c_void_p()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
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
        value = operator.index(value)  # as in _int: the stored value, not a subclass's comparisons
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

    def describe(self, language: Optional[str] = "en") -> Dict[str, Any]:
        """The "view data" screen's content (``tel_describe_json``), parsed."""
        described: Dict[str, Any] = json.loads(self._out("tel_describe_json", None if language is None else _encode(language, "language")))
        return described

    def status(self) -> Dict[str, Any]:
        """``tel_status_json``, parsed."""
        status: Dict[str, Any] = json.loads(self._out("tel_status_json"))
        return status

    def history_json(self) -> str:
        """The text of ``tel_history_json`` as the library wrote it: the last
        52 reports that left the machine, newest first, each ``body`` the exact
        text sent (null over 32 KiB; ``body_sha256`` and ``body_length`` always)."""
        return self._out("tel_history_json")

    def history(self) -> Dict[str, Any]:
        """``history_json()``, parsed."""
        history: Dict[str, Any] = json.loads(self.history_json())
        return history

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
