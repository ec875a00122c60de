"""Deterministic, fast generator of a realistic synthetic LO2 dataset (see FORMAT.md).

By default a run plays the 54 test cases back to back in a shuffled order; each test case lasts
20-180 s and leaves one light-4j log per service. Every file starts with ``init_lines`` physical
start-up lines (server start, config loading, Hikari, Hazelcast cluster join) whose shape never
depends on the test case. ``SynthConfig`` varies these assumptions (``schedule``, ``startup``,
``hard()``). After them comes valid traffic whose volume is proportional to the test case
duration. An error test case adds a few % of failing requests (status ERROR lines, WARN lines,
Java stack traces) to the 1-2 services that handle the failing endpoint only (``FAULTS``);
its other services look exactly like ``correct`` traffic, which has rare ERROR lines too.

Two folder layouts (``SynthConfig.layout``):

- ``v1`` (the default; LO2 v1's archive): ``<out>/logs/light-oauth2-data-<epoch>/<test_case>/``
  with the 7 service logs, all 54 test cases in every run, and ``<out>/metrics/<run>.csv``.
- ``v2`` (LO2 v2's archive; ``SynthConfig.lo2_v2()`` also sets v2's schedule and start-up):
  runs named ``oauth2_logs_LO2_run_<epoch>``; beside them ``<out>/logs/pre_run_results/``
  (``PRE_RUN_FOLDER``: a JSON summary and a CSV of the load generator's check of every test
  case before the runs, no ``.log`` file anywhere: it is not a run); in every test case folder
  a ``metrics/`` folder with small Prometheus ``query_range`` JSON files
  (``TEST_CASE_METRICS``); and about one run in three (``LOST_RUN_SHARE``) lacks 1-3 error
  test cases (``RunPlan.missing``: no folder, no window), as when LO2's load generator lost
  its connection. ``<out>/metrics/<run>.csv`` is written as in v1.

Each file is generated from its own ``random.Random`` seeded with a stable hash of
``(seed, run, test_case, service)``, so output is byte-identical for a config and one file's
content does not depend on which other files were generated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import time
from base64 import b64encode, urlsafe_b64encode
from binascii import b2a_base64
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lo2_dagster.lib.names import (
    CORRECT,
    ERROR_TEST_CASES,
    SERVICES,
    TEST_CASES,
    run_name,
    service_file_name,
)

# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; every output byte is a function of these fields."""

    runs: int = 3
    seed: int = 0
    #: First run's start (epoch s, UTC); later runs follow 3-5 h after the previous one ends.
    start_epoch: int = 1719592986
    #: Mean traffic lines of a token-service file (test cases last 20-180 s, mean 100 s); the
    #: other services scale by RELATIVE_VOLUME. The default is small because the start-up
    #: output dominates the embedded sample: SynthConfig() writes ~14.9 MB, of which the
    #: 1,134 files x 100 start-up lines are ~12 MB.
    token_lines: int = 25
    #: Physical start-up lines at the head of every file (the loader trims 100 by default).
    init_lines: int = 100
    #: Write ``metrics/<run>.csv``.
    metrics: bool = True
    #: Shift of the valid-traffic mix, 0..1 (0: LO2's): each service's share of background
    #: cache lines moves this far toward 1, as after a deploy that changes the traffic. It
    #: changes the template mix of every test case alike (a drift, not an anomaly).
    mix_shift: float = 0.0
    #: Where start-up output goes: at the head of ``every`` file (what the loader's default
    #: trim of 100 lines removes exactly), or only in the files of the ``first`` test case of
    #: each run, as in LO2, whose containers start once per run.
    startup: str = "every"
    #: Test-case order and durations: ``shuffled`` (LO2 v2: random order, 20-180 s each) or
    #: ``v1`` (LO2 v1: ``correct`` first for 60 s, then the error cases in their listed order,
    #: 10 s each, so duration, length and start-up lines give the label away).
    schedule: str = "shuffled"
    #: What the failing requests of an error test case add to the handling service's traffic,
    #: as a share of its traffic lines (drawn per file; at least one failing request).
    error_share: tuple[float, float] = (0.03, 0.06)
    #: The same for failures of a *shared* fault kind in every test case, ``correct`` included
    #: (drawn per file): status lines, WARN lines and stack traces in normal traffic.
    background_faults: tuple[float, float] = (0.0, 0.0)
    #: Share of the fault kinds that are shared: they fail at the background rate everywhere,
    #: so their error test case adds no new line shape, only a frequency shift.
    shared_faults: float = 0.0
    #: Values of varied lengths and alphabets (user names, secrets with symbols, passwords,
    #: ids of any length, non-ASCII credentials) instead of fixed-format ids.
    varied_values: bool = False
    #: Folder layout of LO2 ``v1`` (``light-oauth2-data-<epoch>`` runs, nothing else) or
    #: ``v2`` (``oauth2_logs_LO2_run_<epoch>`` runs, a ``pre_run_results`` folder beside them,
    #: per-test-case ``metrics/`` JSON when ``metrics`` is on, some runs lacking 1-3 error
    #: test cases). Only names and folders: ``schedule`` and ``startup`` stay as given
    #: (:meth:`lo2_v2` sets all three as LO2 v2 has them).
    layout: str = "v1"

    @classmethod
    def hard(cls, **overrides: object) -> SynthConfig:
        """The hard mode (``HARD_VALUES``): start-up only in each run's first test case,
        failing requests adding 0.5-2 % to the traffic lines in error cases, 0.1-0.4 % of
        shared kinds in every test case (half of the fault kinds are shared: their error cases
        are frequency shifts only), varied values. ``overrides`` win."""
        return cls(**{**HARD_VALUES, **overrides})  # type: ignore[arg-type]

    @classmethod
    def lo2_v2(cls, **overrides: object) -> SynthConfig:
        """LO2 v2's shape (``LO2_V2_VALUES``): v2 layout, shuffled order with 20-180 s per test
        case, start-up output only in each run's first test case. ``overrides`` win; to combine
        with the hard mode, merge the presets: ``SynthConfig.lo2_v2(**HARD_VALUES, runs=5)``
        (they agree on ``startup``)."""
        return cls(**{**LO2_V2_VALUES, **overrides})  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        """Refuse values that cannot produce a meaningful dataset."""
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if self.token_lines < 1:
            raise ValueError(f"token_lines must be >= 1, got {self.token_lines}")
        if self.init_lines < 0:
            raise ValueError(f"init_lines must be >= 0, got {self.init_lines}")
        if self.start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0, got {self.start_epoch}")
        if not 0 <= self.mix_shift < 1:
            raise ValueError(f"mix_shift must be within [0, 1), got {self.mix_shift}")
        if self.startup not in ("every", "first"):
            raise ValueError(f"startup must be 'every' or 'first', got {self.startup!r}")
        if self.schedule not in ("shuffled", "v1"):
            raise ValueError(f"schedule must be 'shuffled' or 'v1', got {self.schedule!r}")
        if self.layout not in ("v1", "v2"):
            raise ValueError(f"layout must be 'v1' or 'v2', got {self.layout!r}")
        for name in ("error_share", "background_faults"):
            low, high = getattr(self, name)
            if not 0 <= low <= high < 1:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high < 1, "
                                 f"got {(low, high)}")
        if not 0 <= self.shared_faults <= 1:
            raise ValueError(f"shared_faults must be within [0, 1], got {self.shared_faults}")


#: The hard mode's values (:meth:`SynthConfig.hard`).
HARD_VALUES: Mapping[str, object] = MappingProxyType({
    "startup": "first", "error_share": (0.005, 0.02),
    "background_faults": (0.001, 0.004), "shared_faults": 0.5, "varied_values": True,
})
#: LO2 v2's shape (:meth:`SynthConfig.lo2_v2`).
LO2_V2_VALUES: Mapping[str, object] = MappingProxyType({
    "layout": "v2", "schedule": "shuffled", "startup": "first",
})


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate`` wrote: totals over every file it wrote (logs, metrics CSVs and, in
    the v2 layout, the per-test-case metrics JSON and the pre-run results). ``lines`` counts
    physical lines: a log's lines, a CSV's rows with its header, a JSON file's lines (one for
    each compact per-test-case metrics file)."""

    root: Path
    runs: list[str]
    files: int
    lines: int
    bytes: int
    seconds: float


# --------------------------------------------------------------------------- volumes and time

#: Traffic lines per second of each service relative to the token service.
RELATIVE_VOLUME: dict[str, float] = {
    "token": 1.0,
    "code": 0.5,
    "refresh-token": 0.45,
    "client": 0.14,
    "user": 0.1,
    "service": 0.08,
    "key": 0.06,
}
MIN_DURATION_S, MAX_DURATION_S = 20, 180
#: LO2 v1's schedule: ``correct`` first for 60 s, each error case for 10 s.
V1_CORRECT_S, V1_ERROR_S = 60, 10
MEAN_DURATION_S = (MIN_DURATION_S + MAX_DURATION_S) / 2
#: Pause between two test cases of a run (saving logs, restarting containers), seconds.
TEST_CASE_GAP_S = (3, 9)
#: Pause between the end of a run and the start of the next one, seconds.
RUN_GAP_S = (3 * 3600, 5 * 3600)
#: Share of traffic events that the failing requests add to the secondary services of a fault
#: (owner look-ups in the shared cache).
SECONDARY_SHARE = (0.01, 0.02)
#: Background ERROR lines per traffic line (valid traffic, every test case alike).
BACKGROUND_ERROR_RATE: dict[str, float] = {"token": 0.003, "code": 0.001, "refresh-token": 0.001}
METRICS_STEP_S = 10

_PORTS = {
    "client": 6884, "code": 6881, "key": 6886, "refresh-token": 6887,
    "service": 6883, "token": 6882, "user": 6885,
}
_HZ_VERSION = "3.10.4"
_KEY_SHIFT = 24  # sort key = time_ms << _KEY_SHIFT | sequence number (< 16 M lines per file)
_MS3 = tuple(f"{i:03d}" for i in range(1000))
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_UUID_CLEAR = ~(0xF << 76) & ~(0x3 << 62)  # version nibble and variant bits
_UUID_SET = (0x4 << 76) | (0x2 << 62)


def _offset_table(size: int = 256, length: int = 64) -> tuple[tuple[int, ...], ...]:
    """Cumulative ms offsets of the lines of one request (small steps, as in real logs),
    pre-shifted into sort-key units; a fixed table shared by all files."""
    rng = random.Random(20240628)
    table = []
    for _ in range(size):
        t, offs = 0, []
        for step in rng.choices((0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 9), k=length):
            offs.append(t << _KEY_SHIFT)
            t += step
        table.append(tuple(offs))
    return tuple(table)


_OFFSETS = _offset_table()
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"
_B64URL = _LETTERS + _DIGITS + "-_"
_SECRET_CHARS = _LETTERS + _DIGITS + "!#$%&*+-.?@^_~"


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from parts, stable across processes (unlike ``hash()``)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _hms(second: int) -> str:
    """``HH:MM:SS.`` of an epoch second (UTC time of day; wraps at midnight)."""
    s = second % 86400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}."


# --------------------------------------------------------------------------- logback shapes


def abbreviate(logger: str, target: int = 36) -> str:
    """Logger name as logback's ``%logger{36}`` prints it (leading packages cut to 1 char)."""
    parts = logger.split(".")
    to_trim = len(logger) - target
    out = []
    for part in parts[:-1]:
        if to_trim > 0 and len(part) > 1:
            to_trim -= len(part) - 1
            out.append(part[0])
        else:
            out.append(part)
    out.append(parts[-1])
    return ".".join(out)


@functools.cache
def _lm(level: str, logger: str, method: str) -> str:
    """The ``LEVEL logger method - `` part of a line (level padded to 5)."""
    return f"{level:<5} {abbreviate(logger)} {method} - "


def _status_json(status: int, code: str, message: str, description: str) -> str:
    """light-4j ``Status.toString()``."""
    return (
        f'{{"statusCode":{status},"code":"{code}","message":"{message}",'
        f'"description":"{description}","severity":"ERROR"}}'
    )


_PKG = "com.networknt.oauth"
_D_NORM = _lm("DEBUG", "com.networknt.openapi.ApiNormalisedPath", "<init>")
_D_TYPE = _lm("DEBUG", "com.networknt.schema.TypeValidator", "debug")
_D_JWT = _lm("DEBUG", "com.networknt.security.JwtIssuer", "getPrivateKey")
_I_CFG = _lm("INFO", "com.networknt.config.Config", "getConfigStream")
_I_AUDIT = _lm("INFO", "Audit", "lambda$handleRequest$0")
_E_STATUS = _lm("ERROR", "com.networknt.handler.LightHttpHandler", "setExchangeStatus")
_E_EXC = _lm("ERROR", "com.networknt.exception.ExceptionHandler", "handleRequest")
_W_INVOCATION = _lm("WARN", "com.hazelcast.spi.impl.operationservice.impl.Invocation", "log")
_STORES = {
    name: {
        op: _lm("DEBUG", f"{_PKG}.cache.{name}MapStore", op)
        for op in ("load", "store", "delete")
    }
    for name in ("Client", "Service", "User", "RefreshToken")
}
_STORE_EXC = {
    name: _lm("ERROR", f"{_PKG}.cache.{name}MapStore", op)
    for name, op in (("Client", "delete"), ("RefreshToken", "delete"), ("User", "load"))
}
_OP_VERB = {"load": "Load", "store": "Store", "delete": "Delete"}
_CFG_JKS = _I_CFG + "Config loaded from externalized folder for primary.jks in /config"
_REDIRECT = "http://localhost:8080/authorization"


def _handler(service_pkg: str, cls: str, method: str = "handleRequest",
             level: str = "DEBUG") -> str:
    """``LEVEL c.n.o.x.h.Class method - `` of a light-oauth2 handler."""
    return _lm(level, f"{_PKG}.{service_pkg}.handler.{cls}", method)


def _path_lines(path: str) -> tuple[str, str, str]:
    """The ApiNormalisedPath messages of one request path (shapes of the real excerpt)."""
    return (
        f"{_D_NORM}path = {path}, base path is set to: null",
        f"{_D_NORM}path ={path}",
        f"{_D_NORM}normalised = {path}",
    )


# --------------------------------------------------------------------------- per-file state


class _Gen:
    """Per-file generator: seeded rng, id pools, and the buffer of timed events."""

    def __init__(self, rng: random.Random, service: str, varied: bool = False) -> None:
        """Draw this file's pools (clients, users, threads) from ``rng`` (``varied``: values of
        varied lengths and alphabets, see :class:`SynthConfig`)."""
        self.rng = rng
        self.random = rng.random
        self.service = service
        self.varied = varied
        self.keys: list[int] = []
        self.texts: list[str] = []
        self.extra_lines = 0  # continuation lines inside texts
        tasks = rng.sample(range(1, 17), rng.randint(2, 5))
        self.tasks = [f"[XNIO-1 task-{k}]  " for k in tasks]
        self.hz = [f"[hz._hzInstance_1_dev.partition-operation.thread-{k}]   " for k in range(16)]
        self.clients = [self._client() for _ in range(rng.randint(8, 24))]
        self.client_ids = [c[0] for c in self.clients]
        self.users = [self.user_id() for _ in range(rng.randint(6, 16))]
        self.services = [self.service_id() for _ in range(rng.randint(6, 16))]

    def _client(self) -> tuple[str, str]:
        """A registered client: (client id UUID, ``Basic`` credentials of id:secret)."""
        cid = self.uuid()
        if self.varied and self.random() < 0.1:  # a client whose credentials are not base64
            return cid, self.mojibake()
        basic = b64encode(f"{cid}:{self.secret()}".encode()).decode()
        return cid, basic

    # Values: fixed formats, or (``varied``) any length and alphabet.

    def _text(self, alphabet: str, low: int, high: int) -> str:
        """A random string of ``low``-``high`` characters of ``alphabet``."""
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(low, high)))

    def secret(self) -> str:
        """A client secret: 22 URL-safe base64 characters, or letters, digits and symbols."""
        return self._text(_SECRET_CHARS, 8, 40) if self.varied else self.cid()

    def user_id(self) -> str:
        """A user id: 8 hex digits, or a name of letters (sometimes with digits) of any length."""
        if not self.varied:
            return self.hex8()
        alphabet = _LETTERS if self.random() < 0.6 else _LETTERS + _DIGITS
        return self._text(alphabet, 5, 20)

    def service_id(self) -> str:
        """A service id: 8 hex digits, or letters and digits of any length."""
        return self._text(_LETTERS + _DIGITS, 6, 16) if self.varied else self.hex8()

    def code(self) -> str:
        """An authorization code: 22 URL-safe base64 characters, or 16-43 of them."""
        return self._text(_B64URL, 16, 43) if self.varied else self.cid()

    def token_id(self) -> str:
        """A refresh token: a UUID, or sometimes URL-safe base64 of any length."""
        if self.varied and self.random() < 0.5:
            return self._text(_B64URL, 20, 48)
        return self.uuid()

    def password(self) -> str:
        """A password of letters, digits and symbols (varied) or a PKCE-like string."""
        return self._text(_SECRET_CHARS, 6, 24) if self.varied else self.challenge()

    def mojibake(self) -> str:
        """Credentials that were not base64 (UTF-8 read as Latin-1: ``Ã¤Ã¶``-like bytes)."""
        raw = "".join(self.rng.choices("äöüßéèñøåç€", k=self.rng.randint(3, 10)))
        return raw.encode().decode("latin-1") + self._text(_LETTERS, 2, 8)

    def uuid(self) -> str:
        """A random version-4 UUID string."""
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def cid(self) -> str:
        """A light-4j correlation id: 22 URL-safe base64 chars of a version-4 UUID."""
        n = (self.rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
        return b2a_base64(n.to_bytes(16, "big"), newline=False)[:22].translate(_URLSAFE).decode()

    def hex8(self) -> str:
        """An 8-hex-digit id (users, services, cache keys)."""
        return f"{self.rng.getrandbits(32):08x}"

    def challenge(self) -> str:
        """A PKCE S256 code challenge (43 URL-safe base64 chars)."""
        return urlsafe_b64encode(self.rng.randbytes(32))[:43].decode()

    def prefix(self) -> str:
        """``[XNIO-1 task-N]  <cid> `` of a new request."""
        return f"{self.tasks[int(self.random() * len(self.tasks))]}{self.cid()} "

    def hz_prefix(self) -> str:
        """``[hz...partition-operation.thread-N]   `` (blank correlation id)."""
        return self.hz[self.rng.getrandbits(4)]

    def pick(self, items: Sequence[str]) -> str:
        """One of ``items``, uniformly (cheaper than ``Random.choice``)."""
        return items[int(self.random() * len(items))]

    def client(self) -> tuple[str, str]:
        """A client of the pool."""
        return self.clients[int(self.random() * len(self.clients))]

    def add(self, t_ms: int, lines: list[str]) -> None:
        """Queue the lines of one request starting at ``t_ms`` (a few ms apart)."""
        offs = _OFFSETS[self.rng.getrandbits(8)]
        if len(lines) > len(offs):  # never for real requests; keep them in order anyway
            offs = tuple(i << _KEY_SHIFT for i in range(len(lines)))
        base = len(self.texts)
        tb = t_ms << _KEY_SHIFT
        seq = range(base, base + len(lines))
        self.keys.extend([tb + o + i for o, i in zip(offs, seq, strict=False)])
        self.texts.extend(lines)

    def add_all(self, times: list[int], requests: list[list[str]]) -> None:
        """``add`` for many requests (the hot loop of a file, kept free of method calls)."""
        keys, texts, table, bits = self.keys, self.texts, _OFFSETS, self.rng.getrandbits
        for t_ms, lines in zip(times, requests, strict=True):
            base = len(texts)
            if len(lines) > 64:
                self.add(t_ms, lines)
                continue
            tb = t_ms << _KEY_SHIFT
            seq = range(base, base + len(lines))
            keys.extend([tb + o + i for o, i in zip(table[bits(8)], seq, strict=False)])
            texts.extend(lines)

    def add_at(self, t_ms: int, text: str) -> None:
        """Queue one line at an exact time (start-up output)."""
        self.keys.append(t_ms << _KEY_SHIFT | len(self.texts))
        self.texts.append(text)

    def render(self) -> tuple[str, int]:
        """The file's text, lines sorted by time, and its physical line count."""
        keys, texts = self.keys, self.texts
        keys.sort()
        mask = (1 << _KEY_SHIFT) - 1
        clock = _Clock()
        ms3 = _MS3
        out = [
            f"{clock[(t := k >> _KEY_SHIFT) // 1000]}{ms3[t % 1000]} {texts[k & mask]}"
            for k in keys
        ]
        out.append("")
        return "\n".join(out), len(keys) + self.extra_lines


class _Clock(dict[int, str]):
    """``HH:MM:SS.`` per epoch second, computed once per second."""

    def __missing__(self, second: int) -> str:
        """Format and remember a second not seen yet."""
        text = self[second] = _hms(second)
        return text


Request = Callable[[_Gen], list[str]]


def _validate(value: str, name: str) -> str:
    """The json-schema-validator debug line of one parameter."""
    return f'{_D_TYPE}validate( "{value}", "{value}", {name})'


def _prefix_of(line: str) -> str:
    """``[XNIO-1 task-N]  <cid> `` of a request line (thread, two spaces, 22-char id)."""
    return line[: line.index("]") + 26]


def _audit(g: _Gen, p: str, endpoint: str, status: int) -> str:
    """The light-4j audit line of a finished request."""
    cid = p[p.index("]") + 3 : -1]
    return (
        f'{p}{_I_AUDIT}{{"correlationId":"{cid}","endpoint":"{endpoint}",'
        f'"statusCode":{status},"responseTime":{1 + int(g.random() * 40)}}}'
    )


def _head(g: _Gen, p: str, path: str) -> list[str]:
    """The path-normalisation lines that open every request."""
    a, b, c = _path_lines(path)
    if g.random() < 0.5:
        return [p + a, p + b, p + a]
    return [p + c, p + c, p + c]


def _hz(g: _Gen, store: str, op: str, key: str) -> str:
    """A Hazelcast map-store line (partition thread, blank correlation id)."""
    return f"{g.hz_prefix()}{_STORES[store][op]}{_OP_VERB[op]}:{key}"


# --------------------------------------------------------------------------- token service

_TOK = "/oauth2/token"
_TOK_H = _handler("token", "Oauth2TokenPostHandler", "handleClientCredentials")
_TOK_AC = _handler("token", "Oauth2TokenPostHandler", "handleAuthorizationCode")
_TOK_RT = _handler("token", "Oauth2TokenPostHandler", "handleRefreshToken")
_TOK_APIEXC = _handler("token", "Oauth2TokenPostHandler", level="ERROR") + "ApiException"
_TOK_PATHS = _path_lines(_TOK)
_TOK_CODEMAP = (
    f"{_TOK_AC}variable from codeMap cache userId = admin redirectUri = {_REDIRECT} scope = null"
    " userType = null roles = admin user remember = null"
)


def _token_request(g: _Gen) -> list[str]:
    """One POST /oauth2/token of the valid flows (client credentials, code, refresh)."""
    r = g.random
    p = g.prefix()
    a, b, c = _TOK_PATHS
    if r() < 0.5:
        out, validate = [p + a, p + b, p + a], 0.9
    else:
        out, validate = [p + c, p + c, p + c], 0.25
    if r() < validate:
        out.append(p + _validate("Basic " + g.client()[1], "authorization"))
    x = r()
    if x < 0.42:
        out.append(f"{p}{_TOK_H}scope = null")
    elif x < 0.8:
        if r() < 0.6:
            out.append(f"{p}{_TOK_AC}code = {g.code()} redirectUri = {_REDIRECT}")
        if r() < 0.5:
            out.append(p + _TOK_CODEMAP)
    elif x < 0.92:
        out.append(f"{p}{_TOK_RT}refreshToken = {g.token_id()} scope = null")
    if r() < 0.75:
        out.append(f"{p}{_D_JWT}filename = primary.jks key = selfsigned")
    if r() < 0.5:
        out.append(p + _CFG_JKS)
    return out


def _token_hz(g: _Gen) -> list[str]:
    """Background cache traffic seen in the token service's Hazelcast member."""
    x = g.random()
    if x < 0.3:
        return [_hz(g, "Service", "load", g.pick(g.services))] * g.rng.randint(1, 2)
    if x < 0.55:
        token = g.token_id()
        return [_hz(g, "RefreshToken", "store", token), _hz(g, "RefreshToken", "delete", token)]
    if x < 0.8:
        user = g.pick(g.users)
        return [_hz(g, "User", "store", user), _hz(g, "User", "load", user)]
    return [_hz(g, "Client", "delete", g.client()[0])]


# --------------------------------------------------------------------------- code service

_CODE = "/oauth2/code"
_CODE_GET = _handler("code", "Oauth2CodeGetHandler")
_CODE_AUTH = _lm("DEBUG", f"{_PKG}.code.auth.LightIdentityManager", "verify")


def _code_request(g: _Gen) -> list[str]:
    """One GET /oauth2/code (authorization code, optionally with PKCE)."""
    r = g.random
    p = g.prefix()
    client = g.client()[0]
    out = _head(g, p, _CODE)
    out.append(p + _validate("code", "response_type"))
    out.append(p + _validate(client, "client_id"))
    if r() < 0.6:
        out.append(p + _validate(_REDIRECT, "redirect_uri"))
    pkce = r() < 0.5
    if pkce:
        challenge = g.challenge()
        out.append(p + _validate(challenge, "code_challenge"))
        out.append(p + _validate("S256", "code_challenge_method"))
    out.append(f"{p}{_CODE_AUTH}userId = admin authenticated")
    if r() < 0.3:
        out.append(_hz(g, "Client", "load", client))
    if pkce:
        out.append(f"{p}{_CODE_GET}codeChallenge = {challenge} codeChallengeMethod = S256")
    out.append(f"{p}{_CODE_GET}code = {g.code()} redirectUri = {_REDIRECT}")
    if r() < 0.7:
        out.append(_audit(g, p, "/oauth2/code@get", 302))
    return out


def _code_hz(g: _Gen) -> list[str]:
    """Background cache traffic seen in the code service."""
    if g.random() < 0.5:
        return [_hz(g, "Client", "load", g.client()[0])]
    return [_hz(g, "User", "load", g.pick(g.users))]


# --------------------------------------------------------------------------- refresh-token

_RT = "/oauth2/refresh_token"
_RT_LIST = _handler("refreshtoken", "Oauth2RefreshTokenGetHandler")
_RT_GET = _handler("refreshtoken", "Oauth2RefreshTokenRefreshTokenGetHandler")
_RT_DEL = _handler("refreshtoken", "Oauth2RefreshTokenRefreshTokenDeleteHandler")


def _paged_list(g: _Gen, p: str, path: str, page_size_chance: float) -> list[str]:
    """The head of a list request: path lines, the `page` check, sometimes `pageSize`'s."""
    out = _head(g, p, path)
    out.append(p + _validate("1", "page"))
    if g.random() < page_size_chance:
        out.append(p + _validate("10", "pageSize"))
    return out


def _refresh_request(g: _Gen) -> list[str]:
    """One request of the refresh-token service (list, get or delete)."""
    r = g.random
    p = g.prefix()
    x = r()
    if x < 0.3:
        out = _paged_list(g, p, _RT, page_size_chance=0.5)
        out.append(f"{p}{_RT_LIST}page = 1 pageSize = 10 userId = null")
        if r() < 0.7:
            out.append(_audit(g, p, "/oauth2/refresh_token@get", 200))
        return out
    token = g.token_id()
    out = _head(g, p, f"{_RT}/{token}")
    out.append(p + _validate(token, "refreshToken"))
    if x < 0.7:
        out.append(f"{p}{_RT_GET}refreshToken = {token}")
        out.append(_hz(g, "RefreshToken", "load", token))
        endpoint = "/oauth2/refresh_token/{refreshToken}@get"
    else:
        out.append(f"{p}{_RT_DEL}refreshToken = {token}")
        out.append(_hz(g, "RefreshToken", "delete", token))
        endpoint = "/oauth2/refresh_token/{refreshToken}@delete"
    if r() < 0.7:
        out.append(_audit(g, p, endpoint, 200))
    return out


def _refresh_hz(g: _Gen) -> list[str]:
    """Background refresh-token stores and deletes of the token flows."""
    token = g.token_id()
    if g.random() < 0.6:
        return [_hz(g, "RefreshToken", "store", token)]
    return [_hz(g, "RefreshToken", "store", token), _hz(g, "RefreshToken", "delete", token)]


# --------------------------------------------------------------------------- config services


def _crud_request(
    g: _Gen, base: str, pkg: str, noun: str, store: str, new_id: Callable[[], str],
    pool: list[str], extra: str,
) -> list[str]:
    """One request of a CRUD service (client, service, user): list, get, post, put or delete."""
    r = g.random
    p = g.prefix()
    cap = noun[0].upper() + noun[1:]
    x = r()
    if x < 0.35:
        out = _paged_list(g, p, base, page_size_chance=0.6)
        out.append(f"{p}{_handler(pkg, f'Oauth2{cap}GetHandler')}page = 1 pageSize = 10")
        endpoint, status = f"{base}@get", 200
    elif x < 0.6:
        key = g.pick(pool)
        out = _head(g, p, f"{base}/{key}")
        out.append(p + _validate(key, f"{noun}Id"))
        out.append(f"{p}{_handler(pkg, f'Oauth2{cap}{cap}IdGetHandler')}{noun}Id = {key}")
        out.append(_hz(g, store, "load", key))
        endpoint, status = f"{base}/{{{noun}Id}}@get", 200
    elif x < 0.8:
        key = new_id()
        out = _head(g, p, base)
        out.append(f"{p}{_handler(pkg, f'Oauth2{cap}PostHandler')}{noun}Id = {key} {extra}")
        if r() < 0.5:
            out.append(_hz(g, "User", "load", g.pick(g.users)))
        out.append(_hz(g, store, "store", key))
        endpoint, status = f"{base}@post", 200
    elif x < 0.92:
        key = g.pick(pool)
        out = _head(g, p, base)
        out.append(f"{p}{_handler(pkg, f'Oauth2{cap}PutHandler')}{noun}Id = {key} {extra}")
        out.append(_hz(g, store, "store", key))
        endpoint, status = f"{base}@put", 200
    else:
        key = g.pick(pool)
        out = _head(g, p, f"{base}/{key}")
        out.append(p + _validate(key, f"{noun}Id"))
        out.append(f"{p}{_handler(pkg, f'Oauth2{cap}{cap}IdDeleteHandler')}{noun}Id = {key}")
        out.append(_hz(g, store, "delete", key))
        endpoint, status = f"{base}/{{{noun}Id}}@delete", 200
    if r() < 0.75:
        out.append(_audit(g, p, endpoint, status))
    return out


def _client_request(g: _Gen) -> list[str]:
    """One request of the client service."""
    extra = "clientType = public clientProfile = mobile ownerId = admin"
    return _crud_request(
        g, "/oauth2/client", "client", "client", "Client", g.uuid, g.client_ids, extra
    )


def _service_request(g: _Gen) -> list[str]:
    """One request of the service service."""
    extra = "serviceType = openapi ownerId = admin"
    return _crud_request(
        g, "/oauth2/service", "service", "service", "Service", g.service_id, g.services, extra
    )


def _user_request(g: _Gen) -> list[str]:
    """One request of the user service (CRUD or a password change)."""
    if g.random() < 0.12:
        p = g.prefix()
        user = g.pick(g.users)
        out = _head(g, p, f"/oauth2/password/{user}")
        out.append(p + _validate(user, "userId"))
        out.append(f"{p}{_handler('user', 'Oauth2PasswordUserIdPostHandler')}userId = {user}")
        out.append(_hz(g, "User", "load", user))
        out.append(_hz(g, "User", "store", user))
        if g.random() < 0.75:
            out.append(_audit(g, p, "/oauth2/password/{userId}@post", 200))
        return out
    extra = "userType = customer email = {}@example.com"
    user = g.user_id()
    return _crud_request(
        g, "/oauth2/user", "user", "user", "User", lambda: user, g.users, extra.format(user)
    )


_KEY_GET = _handler("key", "Oauth2KeyKeyIdGetHandler")


def _key_request(g: _Gen) -> list[str]:
    """One GET /oauth2/key/{keyId} (public key certificate download)."""
    p = g.prefix()
    client, basic = g.client()
    key_id = g.pick(("100", "101"))
    out = _head(g, p, f"/oauth2/key/{key_id}")
    out.append(p + _validate("Basic " + basic, "authorization"))
    out.append(f"{p}{_KEY_GET}keyId = {key_id}")
    out.append(_hz(g, "Client", "load", client))
    if g.random() < 0.6:
        out.append(f"{p}{_I_CFG}Config loaded from externalized folder for primary.crt in /config")
    if g.random() < 0.75:
        out.append(_audit(g, p, "/oauth2/key/{keyId}@get", 200))
    return out


def _config_hz(g: _Gen) -> list[str]:
    """Background cache loads seen in the configuration services' Hazelcast members."""
    x = g.random()
    if x < 0.4:
        return [_hz(g, "Client", "load", g.client()[0])]
    if x < 0.7:
        return [_hz(g, "User", "load", g.pick(g.users))]
    return [_hz(g, "Service", "load", g.pick(g.services))]


@dataclass(frozen=True)
class _Profile:
    """How one service's valid traffic looks."""

    request: Request
    background: Request
    background_share: float  # share of events that are background cache lines


_PROFILES: dict[str, _Profile] = {
    "token": _Profile(_token_request, _token_hz, 0.06),
    "code": _Profile(_code_request, _code_hz, 0.05),
    "refresh-token": _Profile(_refresh_request, _refresh_hz, 0.12),
    "client": _Profile(_client_request, _config_hz, 0.05),
    "service": _Profile(_service_request, _config_hz, 0.05),
    "user": _Profile(_user_request, _config_hz, 0.05),
    "key": _Profile(_key_request, _config_hz, 0.05),
}

# --------------------------------------------------------------------------- faults

_STATUS: dict[str, tuple[int, str, str]] = {
    "ERR11000": (400, "VALIDATOR_REQUEST_PARAMETER_QUERY_MISSING",
                 "Query parameter {0} is required on path {1} but not found in request."),
    "ERR11004": (400, "VALIDATOR_SCHEMA_INVALID", "Schema Validation Error - {0}"),
    "ERR12000": (400, "UNABLE_TO_PARSE_FORM_DATA",
                 "Unable to parse x-www-form-urlencoded form data {0}"),
    "ERR12001": (400, "UNSUPPORTED_GRANT_TYPE",
                 "Unsupported grant type {0}. Only authorization_code and client_credentials "
                 "are supported."),
    "ERR12002": (400, "MISSING_AUTHORIZATION_HEADER",
                 "Missing authorization header. client credentials must be passed in as "
                 "Authorization header."),
    "ERR12003": (401, "INVALID_AUTHORIZATION_HEADER", "Invalid authorization header {0}"),
    "ERR12004": (401, "INVALID_BASIC_CREDENTIALS", "Invalid Basic credentials {0}"),
    "ERR12007": (401, "UNAUTHORIZED_CLIENT", "Unauthorized client with wrong client secret."),
    "ERR12011": (400, "PASSWORD_OR_PASSWORDCONFIRM_EMPTY",
                 "Password {0} or PasswordConfirm {1} is empty."),
    "ERR12012": (400, "PASSWORD_PASSWORDCONFIRM_NOT_MATCH",
                 "Password {0} and PasswordConfirm {1} are not matched."),
    "ERR12013": (404, "USER_NOT_FOUND", "User {0} is not found."),
    "ERR12014": (404, "CLIENT_NOT_FOUND", "Client {0} is not found."),
    "ERR12015": (404, "SERVICE_NOT_FOUND", "Service {0} is not found."),
    "ERR12016": (401, "INCORRECT_PASSWORD", "Incorrect password."),
    "ERR12020": (400, "USER_ID_EXISTS", "User id {0} exists."),
    "ERR12021": (400, "EMAIL_EXISTS", "Email {0} exists."),
    "ERR12029": (404, "REFRESH_TOKEN_NOT_FOUND", "Refresh token {0} is not found."),
    "ERR12033": (400, "INVALID_CODE_CHALLENGE_METHOD", "Invalid PKCE code challenge method {0}."),
    "ERR12034": (400, "CODE_CHALLENGE_TOO_SHORT",
                 "PKCE codeChallenge length under lower limit, codeChallenge = {0}"),
    "ERR12035": (400, "CODE_CHALLENGE_TOO_LONG",
                 "PKCE codeChallenge length over upper limit, codeChallenge = {0}"),
    "ERR12036": (400, "INVALID_CODE_CHALLENGE_FORMAT",
                 "PKCE codeChallenge format is invalid, codeChallenge = {0}"),
    "ERR12037": (400, "INVALID_CODE_VERIFIER_FORMAT",
                 "PKCE codeVerifier format is invalid, codeVerifier = {0}"),
    "ERR12038": (400, "CODE_VERIFIER_TOO_SHORT",
                 "PKCE codeVerifier length under lower limit , codeVerifier = {0}"),
    "ERR12039": (400, "CODE_VERIFIER_TOO_LONG",
                 "PKCE codeVerifier length over upper limit , codeVerifier = {0}"),
    "ERR12040": (400, "CODE_VERIFIER_MISSING", "PKCE codeVerifier is not specified"),
    "ERR12041": (400, "CODE_VERIFIER_FAILED", "PKCE verification failed"),
}


@dataclass(frozen=True)
class Fault:
    """The invalid request of one error test case and where it shows up."""

    primary: str  # the service whose handler rejects the request (gets stack traces)
    secondary: tuple[str, ...]  # services that see the failing cache look-up (WARN/ERROR only)
    code: str  # light-4j status code, key of _STATUS
    path: str  # request path ({id} is replaced by a random id)
    endpoint: str  # audit endpoint
    handler: str  # handler class (package-relative: "<pkg>.handler.<Class>")
    args: tuple[str, ...]  # description arguments; "{id}" / "{challenge}" are drawn per request
    cause: str  # "Caused by:" exception of the stack trace ("" = none)
    validator: bool = False  # rejected by the OpenAPI validator before the handler runs


_PATH_PARAMS = {
    "/oauth2/client": "clientId", "/oauth2/service": "serviceId", "/oauth2/user": "userId",
    "/oauth2/password": "userId", "/oauth2/refresh_token": "refreshToken",
}


def _f(primary: str, code: str, path: str, method: str, handler: str, *args: str,
       secondary: tuple[str, ...] = (), cause: str = "", validator: bool = False) -> Fault:
    """Shorthand for a ``Fault`` row."""
    param = next((v for k, v in _PATH_PARAMS.items() if path.startswith(k)), "id")
    endpoint = f"{path.replace('{id}', '{' + param + '}')}@{method}"
    return Fault(primary, secondary, code, path, endpoint, handler, args, cause, validator)


_NPE = "java.lang.NullPointerException: null"
_B64 = "java.lang.IllegalArgumentException: Illegal base64 character 2d"
_DUP = "java.sql.SQLIntegrityConstraintViolationException: Duplicate entry '{id}' for key 'PRIMARY'"
_JSON = "com.networknt.schema.JsonSchemaException: {0}"
_TH = "token.handler.Oauth2TokenPostHandler"
_CH = "code.handler.Oauth2CodeGetHandler"
_CL = "client.handler.Oauth2Client"
_SV = "service.handler.Oauth2Service"
_US = "user.handler.Oauth2User"
_PW = "user.handler.Oauth2PasswordUserIdPostHandler"
_RH = "refreshtoken.handler.Oauth2RefreshToken"
_CT_ENUM = "$.clientType: does not have a value in the enumeration [public, confidential, trusted]"
_CP_ENUM = (
    "$.clientProfile: does not have a value in the enumeration [webServer, mobile, browser, "
    "service, batch]"
)

#: Error test case -> the request that fails and the services that log it. Mapping by name:
#: access_token_* / code_verifier_* / invalid_code_verifier_* / verification_failed_* -> token;
#: authorization_code_* / code_challenge_* / invalid_code_challenge_* -> code;
#: *_client_* -> client; *_service_* -> service; *_user_* / register_user_* / update_password_*
#: -> user; delete_token_* / get_token_* -> refresh-token. Owner and client look-ups of the
#: shared Hazelcast cache also show up in a secondary service (user or client).
FAULTS: dict[str, Fault] = {
    "access_token_auth_header_error_401": _f(
        "token", "ERR12003", _TOK, "post", _TH, "Bearer{id}", cause=_B64),
    "access_token_authorization_form_401": _f(
        "token", "ERR12004", _TOK, "post", _TH, "{id}", cause=_B64),
    "access_token_client_id_not_found_404": _f(
        "token", "ERR12014", _TOK, "post", _TH, "wrong_client_id", secondary=("client",),
        cause=_NPE),
    "access_token_client_secret_wrong_401": _f("token", "ERR12007", _TOK, "post", _TH),
    "access_token_form_urlencoded_400": _f(
        "token", "ERR12000", _TOK, "post", _TH, "application/json",
        cause="io.undertow.util.MalformedMessageException: UT000128: Form data is not in "
              "x-www-form-urlencoded format"),
    "access_token_illegal_grant_type_400": _f(
        "token", "ERR12001", _TOK, "post", _TH, "unsupported_grant"),
    "access_token_missing_authorization_header_400": _f(
        "token", "ERR12002", _TOK, "post", _TH),
    "authorization_code_client_id_missing_400": _f(
        "code", "ERR11000", _CODE, "get", _CH, "client_id", _CODE, validator=True),
    "authorization_code_invalid_client_id_404": _f(
        "code", "ERR12014", _CODE, "get", _CH, "invalid_client_id", secondary=("client",),
        cause=_NPE),
    "authorization_code_invalid_password_401": _f(
        "code", "ERR12016", _CODE, "get", "code.auth.LightIdentityManager"),
    "authorization_code_missing_response_type_400": _f(
        "code", "ERR11000", _CODE, "get", _CH, "response_type", _CODE, validator=True),
    "authorization_code_response_not_code_400": _f(
        "code", "ERR11004", _CODE, "get", _CH,
        "$.response_type: does not have a value in the enumeration [code]",
        cause=_JSON, validator=True),
    "code_challenge_invalid_format_pkce_400": _f(
        "code", "ERR12036", _CODE, "get", _CH, "{challenge}!"),
    "code_challenge_too_long_pkce_400": _f(
        "code", "ERR12035", _CODE, "get", _CH, "{challenge}{challenge}{challenge}"),
    "code_challenge_too_short_pkce_400": _f("code", "ERR12034", _CODE, "get", _CH, "{id}"),
    "code_verifier_missing_pkce_400": _f("token", "ERR12040", _TOK, "post", _TH),
    "code_verifier_too_long_pkce_400": _f(
        "token", "ERR12039", _TOK, "post", _TH, "{challenge}{challenge}{challenge}"),
    "code_verifier_too_short_pkce_400": _f("token", "ERR12038", _TOK, "post", _TH, "{id}"),
    "delete_client_404_no_client": _f(
        "client", "ERR12014", "/oauth2/client/{id}", "delete", _CL + "ClientIdDeleteHandler",
        "{id}", cause=_NPE),
    "delete_service_404_no_service": _f(
        "service", "ERR12015", "/oauth2/service/{id}", "delete",
        _SV + "ServiceIdDeleteHandler", "{id}", cause=_NPE),
    "delete_token_404": _f(
        "refresh-token", "ERR12029", "/oauth2/refresh_token/{id}", "delete",
        _RH + "RefreshTokenDeleteHandler", "{id}", cause=_NPE),
    "delete_user_404_no_user": _f(
        "user", "ERR12013", "/oauth2/user/{id}", "delete", _US + "UserIdDeleteHandler", "{id}",
        cause=_NPE),
    "get_client_404_no_client": _f(
        "client", "ERR12014", "/oauth2/client/{id}", "get", _CL + "ClientIdGetHandler", "{id}",
        cause=_NPE),
    "get_client_page_400_no_page": _f(
        "client", "ERR11000", "/oauth2/client", "get", _CL + "GetHandler", "page",
        "/oauth2/client", validator=True),
    "get_service_404_no_service": _f(
        "service", "ERR12015", "/oauth2/service/{id}", "get", _SV + "ServiceIdGetHandler",
        "{id}", cause=_NPE),
    "get_service_page_400_no_page": _f(
        "service", "ERR11000", "/oauth2/service", "get", _SV + "GetHandler", "page",
        "/oauth2/service", validator=True),
    "get_token_404": _f(
        "refresh-token", "ERR12029", "/oauth2/refresh_token/{id}", "get",
        _RH + "RefreshTokenGetHandler", "{id}", cause=_NPE),
    "get_token_page_400_no_page": _f(
        "refresh-token", "ERR11000", _RT, "get", _RH + "GetHandler", "page", _RT,
        validator=True),
    "get_user_404_no_user": _f(
        "user", "ERR12013", "/oauth2/user/{id}", "get", _US + "UserIdGetHandler", "{id}",
        cause=_NPE),
    "get_user_page_400_no_page": _f(
        "user", "ERR11000", "/oauth2/user", "get", _US + "GetHandler", "page", "/oauth2/user",
        validator=True),
    "invalid_code_challenge_method_pkce_400": _f(
        "code", "ERR12033", _CODE, "get", _CH, "S512"),
    "invalid_code_verifier_format_PKCE_400": _f(
        "token", "ERR12037", _TOK, "post", _TH, "{challenge}#%"),
    "register_client_400_clientProfile": _f(
        "client", "ERR11004", "/oauth2/client", "post", _CL + "PostHandler", _CP_ENUM,
        cause=_JSON, validator=True),
    "register_client_400_clientType": _f(
        "client", "ERR11004", "/oauth2/client", "post", _CL + "PostHandler", _CT_ENUM,
        cause=_JSON, validator=True),
    "register_client_404_no_user": _f(
        "client", "ERR12013", "/oauth2/client", "post", _CL + "PostHandler", "{id}",
        secondary=("user",), cause=_NPE),
    "register_service_400_service_id": _f(
        "service", "ERR11004", "/oauth2/service", "post", _SV + "PostHandler",
        "$.serviceId: is missing but it is required", cause=_JSON, validator=True),
    "register_service_400_service_type": _f(
        "service", "ERR11004", "/oauth2/service", "post", _SV + "PostHandler",
        "$.serviceType: does not have a value in the enumeration [swagger, openapi, graphql, "
        "hybrid]", cause=_JSON, validator=True),
    "register_service_404_no_user": _f(
        "service", "ERR12013", "/oauth2/service", "post", _SV + "PostHandler", "{id}",
        secondary=("user",), cause=_NPE),
    "register_user_400_email_exists": _f(
        "user", "ERR12021", "/oauth2/user", "post", _US + "PostHandler", "{id}@example.com",
        cause=_DUP),
    "register_user_400_no_password": _f(
        "user", "ERR12011", "/oauth2/user", "post", _US + "PostHandler", "null", "null"),
    "register_user_400_password_no_match": _f(
        "user", "ERR12012", "/oauth2/user", "post", _US + "PostHandler", "{id}", "{password}"),
    "register_user_400_user_exists": _f(
        "user", "ERR12020", "/oauth2/user", "post", _US + "PostHandler", "{id}", cause=_DUP),
    "update_client_400_clientProfile": _f(
        "client", "ERR11004", "/oauth2/client", "put", _CL + "PutHandler", _CP_ENUM,
        cause=_JSON, validator=True),
    "update_client_400_clientType": _f(
        "client", "ERR11004", "/oauth2/client", "put", _CL + "PutHandler", _CT_ENUM,
        cause=_JSON, validator=True),
    "update_client_404_clientId": _f(
        "client", "ERR12014", "/oauth2/client", "put", _CL + "PutHandler", "{id}", cause=_NPE),
    "update_client_404_ownerId": _f(
        "client", "ERR12013", "/oauth2/client", "put", _CL + "PutHandler", "{id}",
        secondary=("user",), cause=_NPE),
    "update_password_400_not_match": _f(
        "user", "ERR12012", "/oauth2/password/{id}", "post", _PW, "{id}", "{password}"),
    "update_password_401_wrong_password": _f(
        "user", "ERR12016", "/oauth2/password/{id}", "post", _PW),
    "update_password_404_user_not_found": _f(
        "user", "ERR12013", "/oauth2/password/{id}", "post", _PW, "{id}", cause=_NPE),
    "update_service_404_service_id": _f(
        "service", "ERR12015", "/oauth2/service", "put", _SV + "PutHandler", "{id}",
        cause=_NPE),
    "update_service_404_user_id": _f(
        "service", "ERR12013", "/oauth2/service", "put", _SV + "PutHandler", "{id}",
        secondary=("user",), cause=_NPE),
    "update_user_404_no_user": _f(
        "user", "ERR12013", "/oauth2/user", "put", _US + "PutHandler", "{id}", cause=_NPE),
    "verification_failed_pkce_400": _f("token", "ERR12041", _TOK, "post", _TH),
}

#: The cache store a secondary service looks the missing key up in.
_SECONDARY_STORE = {"client": "Client", "user": "User"}

#: Frames of a light-4j request below the handler, innermost first: (class, method, line,
#: optional). Optional middleware is present or not depending on the endpoint's chain.
_CHAIN: tuple[tuple[str, str, int, bool], ...] = (
    ("com.networknt.handler.Handler", "next", 233, False),
    ("com.networknt.openapi.ValidatorHandler", "handleRequest", 125, True),
    ("com.networknt.handler.Handler", "next", 233, True),
    ("com.networknt.body.BodyHandler", "handleRequest", 117, True),
    ("com.networknt.handler.Handler", "next", 233, True),
    ("com.networknt.security.JwtVerifyHandler", "handleRequest", 143, True),
    ("com.networknt.handler.Handler", "next", 233, True),
    ("com.networknt.openapi.OpenApiHandler", "handleRequest", 134, False),
    ("com.networknt.handler.Handler", "next", 233, False),
    ("com.networknt.audit.AuditHandler", "handleRequest", 91, True),
    ("com.networknt.handler.Handler", "next", 233, True),
    ("com.networknt.correlation.CorrelationHandler", "handleRequest", 84, False),
    ("com.networknt.handler.Handler", "next", 233, False),
    ("com.networknt.exception.ExceptionHandler", "handleRequest", 76, False),
    ("com.networknt.handler.Handler", "next", 233, False),
    ("com.networknt.handler.OrchestrationHandler", "handleRequest", 52, False),
    ("io.undertow.server.Connectors", "executeRootHandler", 387, False),
    ("io.undertow.server.HttpServerExchange$1", "run", 852, False),
    ("org.jboss.threads.ContextClassLoaderSavingRunnable", "run", 35, False),
    ("org.jboss.threads.EnhancedQueueExecutor", "safeRun", 1985, False),
    ("org.jboss.threads.EnhancedQueueExecutor$ThreadBody", "doRunTask", 1487, False),
    ("org.jboss.threads.EnhancedQueueExecutor$ThreadBody", "run", 1378, False),
    ("java.lang.Thread", "run", 829, False),
)
_HANDLER_METHODS = ("authenticateClient", "getClient", "handleRequest")
#: Innermost frames of a ``Caused by:`` block, by exception class.
_CAUSE_FRAMES: dict[str, tuple[tuple[str, str, int], ...]] = {
    "java.lang.NullPointerException": (
        ("com.hazelcast.map.impl.proxy.MapProxyImpl", "get", 117),
        ("com.hazelcast.map.impl.proxy.MapProxySupport", "getInternal", 343),
    ),
    "java.lang.IllegalArgumentException": (
        ("java.util.Base64$Decoder", "decode0", 714),
        ("java.util.Base64$Decoder", "decode", 526),
        ("java.util.Base64$Decoder", "decode", 549),
    ),
    "java.sql.SQLIntegrityConstraintViolationException": (
        ("com.mysql.cj.jdbc.exceptions.SQLError", "createSQLException", 117),
        ("com.mysql.cj.jdbc.ClientPreparedStatement", "executeInternal", 953),
        ("com.mysql.cj.jdbc.ClientPreparedStatement", "executeUpdate", 1092),
    ),
    "com.networknt.schema.JsonSchemaException": (
        ("com.networknt.schema.JsonSchema", "validate", 248),
        ("com.networknt.openapi.SchemaValidator", "doValidate", 137),
    ),
    "io.undertow.util.MalformedMessageException": (
        ("io.undertow.server.handlers.form.FormEncodedDataDefinition$FormEncodedDataParser",
         "parseBlocking", 334),
    ),
}


def _frame(cls: str, method: str, line: int) -> str:
    """One ``\\tat`` stack-trace line."""
    simple = cls.rsplit(".", 1)[-1].split("$", 1)[0]
    return f"\tat {cls}.{method}({simple}.java:{line})"


def _stack_trace(g: _Gen, fault: Fault, status: str) -> str:
    """A Java stack trace (~13-30 frames, maybe a ``Caused by:`` block) as continuation lines,
    returned with its leading newline."""
    rng = g.rng
    cls = f"{_PKG}.{fault.handler}"
    base = 40 + stable_seed(cls) % 300
    lines = [f"com.networknt.exception.ApiException: {status}"]
    top = rng.randint(1, 3)
    for i in range(top):
        lines.append(_frame(cls, _HANDLER_METHODS[i - top], base + 37 * (top - i)))
    skip = rng.random() < 0.5  # chains without the optional middleware pairs
    frames = [f for f in _CHAIN if not (skip and f[3])]
    lines.extend(_frame(c, m, n) for c, m, n, _ in frames)
    if fault.cause:
        cause = fault.cause.replace("{id}", g.hex8()).replace("{0}", fault.args[0])
        lines.append(f"Caused by: {cause}")
        inner = _CAUSE_FRAMES.get(cause.split(":", 1)[0], ())
        lines.extend(_frame(*f) for f in inner[: rng.randint(1, max(1, len(inner)))])
        lines.append(_frame(cls, _HANDLER_METHODS[-top], base + 37 * top + 5))
        lines.append(f"\t... {top - 1 + len(frames)} more")
    g.extra_lines += len(lines)
    return "\n" + "\n".join(lines)


def _fill(g: _Gen, text: str) -> str:
    """Replace ``{id}`` / ``{challenge}`` / ``{password}`` placeholders with random values."""
    if "{id}" in text:
        if g.varied:
            pick = g.random()
            value = g.user_id() if pick < 0.4 else g.uuid() if pick < 0.7 else g.service_id()
        else:
            value = g.hex8() if g.random() < 0.5 else g.uuid()
        text = text.replace("{id}", value)
    if "{challenge}" in text:
        text = text.replace("{challenge}", g.challenge())
    if "{password}" in text:
        text = text.replace("{password}", g.password())
    return text


def _injected_request(g: _Gen, fault: Fault, trace: bool) -> list[str]:
    """One failing request as the handling service logs it."""
    status_code, message, description = _STATUS[fault.code]
    args = [_fill(g, a) for a in fault.args]
    status = _status_json(status_code, fault.code, message, description.format(*args, "", ""))
    p = g.prefix()
    path = _fill(g, fault.path)
    out = _head(g, p, path)
    handler = _lm("DEBUG", f"{_PKG}.{fault.handler}", "handleRequest")
    if fault.primary in ("token", "key"):
        out.append(p + _validate("Basic " + g.client()[1], "authorization"))
    if not fault.validator:
        detail = f" {args[0]}" if args else ""
        out.append(f"{p}{handler}{message.lower().replace('_', ' ')}{detail}")
        if fault.code in ("ERR12013", "ERR12014", "ERR12015", "ERR12029") and args:
            store = {"ERR12013": "User", "ERR12014": "Client", "ERR12015": "Service"}.get(
                fault.code, "RefreshToken")
            out.append(_hz(g, store, "load", args[0]))
    warn = _lm("WARN", f"{_PKG}.{fault.handler}", "handleRequest")
    out.append(f"{p}{warn}{message} {fault.endpoint}")
    out.append(f"{p}{_E_STATUS}status = {status}")
    if fault.primary == "token" and not fault.validator:
        out.append(p + _TOK_APIEXC)  # the token handler logs the ApiException it answers with
    if trace:
        out.append(f"{p}{_E_EXC}Exception:{_stack_trace(g, fault, status)}")
    if g.random() < 0.8:
        out.append(_audit(g, p, fault.endpoint, status_code))
    return out


def _secondary_lines(g: _Gen, fault: Fault) -> list[str]:
    """What a secondary service logs for one failing request: a cache miss of the bad key."""
    store = _SECONDARY_STORE.get(g.service, "User")
    key = fault.args[0] if fault.args and "{" not in fault.args[0] else g.hex8()
    out = [_hz(g, store, "load", key)]
    warn = _lm("WARN", f"{_PKG}.cache.{store}MapStore", "load")
    out.append(f"{g.hz_prefix()}{warn}{store.lower()} {key} is not found in database")
    if g.random() < 0.3:
        out.append(f"{g.hz_prefix()}{_lm('ERROR', f'{_PKG}.cache.{store}MapStore', 'load')}"
                   "Exception:")
    return out


# --------------------------------------------------------------------------- start-up output

_MAIN = "[main]   "
_HZ_PRIORITY = "[hz._hzInstance_1_dev.priority-generic-operation.thread-0]   "
_CFG_LINE = f"{_MAIN}{_I_CFG}Config loaded from externalized folder for %s in /config"
_CFG_DEFAULT = f"{_MAIN}{_I_CFG}Config loaded from default folder for %s"
_HIKARI_LM = _MAIN + _lm("DEBUG", "com.zaxxer.hikari.HikariConfig", "logConfiguration")
_HIKARI_POOL = _MAIN + _lm("INFO", "com.zaxxer.hikari.HikariDataSource", "getConnection")
_HIKARI = (
    ("allowPoolSuspension", "false"), ("autoCommit", "true"), ("catalog", "none"),
    ("connectionInitSql", "none"), ("connectionTestQuery", "none"),
    ("connectionTimeout", "30000"), ("dataSource", "none"), ("dataSourceClassName", "none"),
    ("dataSourceJNDI", "none"), ("dataSourceProperties", "{password=<masked>}"),
    ("driverClassName", "none"), ("healthCheckProperties", "{}"),
    ("healthCheckRegistry", "none"), ("idleTimeout", "600000"),
    ("initializationFailTimeout", "1"), ("isolateInternalQueries", "false"),
    ("jdbcUrl", "jdbc:mysql://mysqldb:3306/oauth2?useSSL=false"),
    ("leakDetectionThreshold", "0"), ("maxLifetime", "1800000"), ("maximumPoolSize", "2"),
    ("metricRegistry", "none"), ("metricsTrackerFactory", "none"), ("minimumIdle", "2"),
    ("password", "<masked>"), ("poolName", '"HikariPool-1"'), ("readOnly", "false"),
    ("registerMbeans", "false"), ("scheduledExecutor", "none"), ("schema", "none"),
    ("threadFactory", "internal"), ("transactionIsolation", "default"),
    ("username", '"mysqluser"'), ("validationTimeout", "5000"),
)
_S_HEAD = (
    _MAIN + _lm("INFO", "com.networknt.server.Server", "start") + "server starts",
    _CFG_LINE % "server.yml",
    _CFG_LINE % "secret.yml",
    _CFG_DEFAULT % "status.yml",
    _CFG_LINE % "service.yml",
    _CFG_LINE % "datasource.yml",
)
_S_HIKARI = (
    _HIKARI_LM + "HikariPool-1 - configuration:",
    *(f"{_HIKARI_LM}{(k + '.' * 32)[:32]}{v}" for k, v in _HIKARI),
    _HIKARI_POOL + "HikariPool-1 - Starting...",
)
_S_HIKARI_ADDED = (
    _MAIN + _lm("INFO", "com.zaxxer.hikari.pool.HikariPool", "checkFailFast")
    + "HikariPool-1 - Added connection com.mysql.jdbc.JDBC4Connection@%s"
)
_S_HIKARI_DONE = _HIKARI_POOL + "HikariPool-1 - Start completed."
_S_TAIL_CONFIGS = (
    _CFG_LINE % "handler.yml",
    _CFG_LINE % "openapi.yaml",
    *(_CFG_DEFAULT % c for c in ("openapi-security.yml", "openapi-validator.yml", "audit.yml",
                                 "body.yml", "correlation.yml", "health.yml", "info.yml")),
    _CFG_LINE % "security.yml",
)
#: Lines that pad the start-up to ``init_lines`` (more configs of the handler chain).
_S_FILL = (
    *(_CFG_DEFAULT % c for c in ("values.yml", "client.yml", "jwt.yml", "cors.yml",
                                 "metrics.yml", "header.yml", "traceability.yml", "dump.yml",
                                 "sanitizer.yml", "prometheus.yml", "server-info.yml")),
    _MAIN + _lm("DEBUG", "com.networknt.handler.Handler", "init") + "handler chains loaded",
)
_S_HOOK = (
    _MAIN + _lm("INFO", f"{_PKG}.cache.CacheStartupHookProvider", "onStartup")
    + "CacheStartupHookProvider is called"
)
_S_SERVER = (
    _MAIN + _lm("INFO", "org.xnio", "<clinit>") + "XNIO version 3.3.8.Final",
    _MAIN + _lm("INFO", "org.xnio.nio", "<clinit>") + "XNIO NIO Implementation Version 3.3.8.Final",
    _MAIN + _lm("INFO", "org.jboss.threads", "<clinit>") + "JBoss Threads version 3.1.0.Final",
)
_S_STARTED = (
    _MAIN + _lm("INFO", "com.networknt.server.Server", "start0")
    + "Https Server started on ip:0.0.0.0 Port:%d"
)


def _hz_line(logger: str, msg: str, thread: str = _MAIN) -> str:
    """A Hazelcast INFO line (Hazelcast logs through slf4j from its ``log`` method)."""
    return f"{thread}{_lm('INFO', logger, 'log')}{msg}"


#: (logger, message) of the Hazelcast start-up; {hz} is ``[ip]:5701 [dev] [version]``.
_S_HAZEL: tuple[tuple[str, str], ...] = (
    ("com.hazelcast.config.XmlConfigLocator", "Loading 'hazelcast.xml' from classpath."),
    ("com.hazelcast.instance.AddressPicker", "[LOCAL] [dev] [{v}] Prefer IPv4 stack is true."),
    ("com.hazelcast.instance.AddressPicker",
     "[LOCAL] [dev] [{v}] Picked [{ip}]:5701, using socket "
     "ServerSocket[addr=/0:0:0:0:0:0:0:0,localport=5701], bind any local is true"),
    ("com.hazelcast.system",
     "{hz} Hazelcast {v} (20180727 - 0f51fcf) starting at [{ip}]:5701"),
    ("com.hazelcast.system", "{hz} Copyright (c) 2008-2018, Hazelcast, Inc. All Rights Reserved."),
    ("com.hazelcast.system", "{hz} Configured Hazelcast Serialization version: 1"),
    ("com.hazelcast.spi.impl.operationservice.impl.BackpressureRegulator",
     "{hz} Backpressure is disabled"),
    ("com.hazelcast.spi.impl.operationexecutor.impl.OperationExecutorImpl",
     "{hz} Starting 16 partition threads and 3 generic threads (1 dedicated for priority tasks)"),
    ("com.hazelcast.core.LifecycleService", "{hz} [{ip}]:5701 is STARTING"),
)
_S_CLUSTER = _lm("INFO", "com.hazelcast.internal.cluster.ClusterService", "log")
_S_CONNECT = _hz_line(
    "com.hazelcast.nio.tcp.TcpIpConnectionManager",
    "%s Established socket connection between /%s:%d and /%s:5701",
    thread="[hz._hzInstance_1_dev.IO.thread-in-%d]   ",
)
_S_STARTED_HZ = _hz_line("com.hazelcast.core.LifecycleService", "%s [%s]:5701 is STARTED")
#: A member logs the member list when it joins and again each time a later member joins; the
#: list is a multi-line message, and its continuation lines are short.
MAX_MEMBER_BLOCKS = len(SERVICES)


def _member_blocks(g: _Gen, service: str, ips: dict[str, str], join_order: tuple[str, ...],
                   hz: str) -> list[str]:
    """The ``Members {size:k, ver:k} [`` blocks this member logs as the cluster forms."""
    uuids = {s: g.uuid() for s in join_order}
    me = join_order.index(service)
    first = max(me + 1, len(join_order) - MAX_MEMBER_BLOCKS + 1)
    blocks = []
    for size in range(first, len(join_order) + 1):
        members = "\n".join(
            f"\tMember [{ips[s]}]:5701 - {uuids[s]}{' this' if s == service else ''}"
            for s in join_order[:size]
        )
        blocks.append(
            f"{_HZ_PRIORITY}{_S_CLUSTER}{hz}\nMembers {{size:{size}, ver:{size}}} [\n{members}\n]"
        )
    return blocks


def _startup_lines(g: _Gen, service: str, plan: RunPlan, n: int) -> list[str]:
    """Start-up entries (text after the time) making exactly ``n`` physical lines.

    Same shape for every test case of a run's service: only ids, ephemeral ports and
    times vary. The Hazelcast member lists are multi-line messages whose continuation
    lines count as physical lines, as they do for the loader's trim.
    """
    ip = plan.ips[service]
    hz = f"[{ip}]:5701 [dev] [{_HZ_VERSION}]"
    peer = next(s for s in plan.join_order if s != service)
    hazel = [
        _hz_line(lg, msg.format(hz=hz, v=_HZ_VERSION, ip=ip)) for lg, msg in _S_HAZEL
    ]
    hazel.append(_S_CONNECT % (g.rng.randint(0, 2), hz, ip, g.rng.randint(32768, 60999),
                               plan.ips[peer]))
    blocks = _member_blocks(g, service, plan.ips, plan.join_order, hz)
    hazel.append(blocks[0])
    hazel.append(_S_STARTED_HZ % (hz, ip))
    hazel.extend(blocks[1:])
    # (text, priority): when ``n`` is small, the lowest priorities go first (from the end).
    entries = [(t, 3) for t in _S_HEAD] + [(t, 0) for t in _S_HIKARI]
    entries += [(_S_HIKARI_ADDED % g.hex8()[:7], 0), (_S_HIKARI_DONE, 2)]
    entries += [(t, 4) for t in hazel] + [(_S_HOOK, 2)]
    entries += [(t, 1) for t in _S_TAIL_CONFIGS] + [(t, 1) for t in _S_SERVER]
    entries.append((_S_STARTED % _PORTS[service], 5))
    return _fit(entries, n)


def _physical(text: str) -> int:
    """Physical lines of one entry (a multi-line message counts all its lines)."""
    return text.count("\n") + 1


def _fit(entries: list[tuple[str, int]], n: int) -> list[str]:
    """Exactly ``n`` physical lines: drop low-priority entries while too long, then insert
    more config loading before the XNIO lines while too short."""
    total = sum(_physical(t) for t, _ in entries)
    for priority in sorted({pr for _, pr in entries}):
        for i in range(len(entries) - 1, -1, -1):
            if total <= n:
                break
            text, pr = entries[i]
            if pr == priority:
                total -= _physical(text)
                del entries[i]
    texts = [t for t, _ in entries]
    at = max(0, len(texts) - 4)
    texts[at:at] = [_S_FILL[i % len(_S_FILL)] for i in range(n - total)]
    return texts


def _startup_step(g: _Gen, text: str) -> int:
    """Milliseconds until the next start-up line (the slow steps take 0.2-1.2 s)."""
    if "Picked" in text or "Start completed" in text or "Members {" in text:
        return 200 + g.rng.getrandbits(10)
    return g.rng.getrandbits(4)


# --------------------------------------------------------------------------- run plan


@dataclass(frozen=True)
class Window:
    """When one test case of a run was played (epoch ms, end exclusive)."""

    test_case: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class RunPlan:
    """A run: its name, start, shuffled test-case windows, container IPs, the order in
    which the containers join the Hazelcast cluster, and the error test cases it lacks (v2
    layout only; they have no window and no folder)."""

    name: str
    epoch: int
    windows: tuple[Window, ...]
    ips: dict[str, str]
    join_order: tuple[str, ...]
    missing: tuple[str, ...] = ()

    @property
    def end_ms(self) -> int:
        """End of the last test case (epoch ms)."""
        return self.windows[-1].end_ms


#: v2 layout: share of the runs that lack some error test cases, and how many they lack.
LOST_RUN_SHARE = 1 / 3
LOST_TEST_CASES = (1, 3)


def missing_test_cases(config: SynthConfig, index: int) -> tuple[str, ...]:
    """The error test cases that run ``index`` lacks (in their listed order; never
    ``correct``): none in the v1 layout; in v2, 1-3 of them in about one run in three (LO2 v2's
    load generator lost its connection now and then). Drawn from their own seed, so the rest
    of the plan's draws do not move them. With seed 0 and 3 runs, the second run lacks some."""
    if config.layout != "v2":
        return ()
    rng = random.Random(stable_seed(config.seed, "disconnected", index))
    if rng.random() >= LOST_RUN_SHARE:
        return ()
    lost = set(rng.sample(ERROR_TEST_CASES, rng.randint(*LOST_TEST_CASES)))
    return tuple(t for t in ERROR_TEST_CASES if t in lost)


def plan_runs(config: SynthConfig) -> list[RunPlan]:
    """The runs of a config: names (``config.layout``), order, durations and gaps, and (v2)
    the test cases each run lacks, all from the seed."""
    plans: list[RunPlan] = []
    epoch = config.start_epoch
    for index in range(config.runs):
        rng = random.Random(stable_seed(config.seed, "run", index))
        if plans:
            epoch = plans[-1].end_ms // 1000 + rng.randint(*RUN_GAP_S)
        order = list(TEST_CASES)
        if config.schedule == "shuffled":
            rng.shuffle(order)
        missing = missing_test_cases(config, index)
        if missing:
            order = [t for t in order if t not in missing]
        t = epoch * 1000
        windows = []
        for test_case in order:
            if config.schedule == "v1":
                duration = (V1_CORRECT_S if test_case == CORRECT else V1_ERROR_S) * 1000
            else:
                duration = rng.randint(MIN_DURATION_S * 1000, MAX_DURATION_S * 1000)
            windows.append(Window(test_case, t, t + duration))
            t += duration + rng.randint(*TEST_CASE_GAP_S) * 1000
        hosts = rng.sample(range(2, 30), len(SERVICES))
        ips = {s: f"172.18.0.{h}" for s, h in zip(SERVICES, hosts, strict=True)}
        join_order = list(SERVICES)
        rng.shuffle(join_order)
        plans.append(RunPlan(run_name(epoch, config.layout), epoch, tuple(windows), ips,
                             tuple(join_order), missing))
    return plans


# --------------------------------------------------------------------------- one file


def _traffic_lines(config: SynthConfig, rng: random.Random, service: str, window: Window) -> int:
    """How many valid-traffic lines a service logs in a window (rate x duration, +-15 %)."""
    duration_s = (window.end_ms - window.start_ms) / 1000
    base = config.token_lines * duration_s / MEAN_DURATION_S * RELATIVE_VOLUME[service]
    return max(1, round(base * rng.uniform(0.85, 1.15)))


def _build_requests(g: _Gen, profile: _Profile, n: int, mix_shift: float = 0.0
                    ) -> list[list[str]]:
    """Valid requests and background cache lines until ``n`` lines, with rare ERROR lines
    (``mix_shift``: see :class:`SynthConfig`)."""
    rng = g.rng
    background = profile.background_share + mix_shift * (1 - profile.background_share)
    rate = BACKGROUND_ERROR_RATE.get(g.service, 0.0)
    requests: list[list[str]] = []
    total = valid = 0
    # The token log always has a few (the real 52 s excerpt has 61): force one in tiny files.
    forced = rng.randrange(max(1, n // 10)) if g.service == "token" else -1
    while total < n:
        if rng.random() < background:
            lines = profile.background(g)
        else:
            lines = profile.request(g)
            if valid == forced or rng.random() < rate * 6:
                lines = _background_error(g, lines)
            valid += 1
        requests.append(lines)
        total += len(lines)
    return requests


def _background_error(g: _Gen, lines: list[str]) -> list[str]:
    """Rare ERROR lines of valid traffic: an ApiException at the end of a request, or a
    failed cache delete (no stack trace, as in the real ``correct`` logs)."""
    if g.service == "token" and g.random() < 0.7:
        return [*lines, _prefix_of(lines[0]) + _TOK_APIEXC]
    store = "RefreshToken" if g.service == "refresh-token" else "Client"
    return [*lines, g.hz_prefix() + _STORE_EXC[store] + "Exception:"]


def _rare_warn(g: _Gen) -> list[str]:
    """A Hazelcast invocation retry warning (valid traffic, very rare)."""
    return [
        f"{g.hz_prefix()}{_W_INVOCATION}[172.18.0.{g.rng.randint(2, 29)}]:5701 [dev] "
        f"[{_HZ_VERSION}] "
        "Retrying invocation: Invocation{op=GetOperation{name=clients}, tryCount=250, "
        f"invokeCount={g.rng.randint(2, 99)}}}, Reason: "
        "com.hazelcast.spi.exception.RetryableHazelcastException"
    ]


def render_file(
    config: SynthConfig, plan: RunPlan, window: Window, service: str
) -> tuple[str, int]:
    """The full text of one container log and its physical line count."""
    rng = random.Random(stable_seed(config.seed, plan.name, window.test_case, service))
    g = _Gen(rng, service, config.varied_values)
    t = window.start_ms + rng.randint(0, 1500)
    if config.startup == "every" or window is plan.windows[0]:
        for text in _startup_lines(g, service, plan, config.init_lines):
            g.add_at(t, text)
            g.extra_lines += text.count("\n")
            t += _startup_step(g, text)
    start = t + rng.randint(50, 400)
    span = max(1, window.end_ms - 200 - start)
    n = _traffic_lines(config, rng, service, window)
    requests = _build_requests(g, _PROFILES[service], n, config.mix_shift)
    if rng.random() < n / 4000:
        requests.append(_rare_warn(g))
    requests.extend(_fault_requests(g, window.test_case, service, n, config.error_share))
    if config.background_faults[1] > 0:
        requests.extend(_background_faults(g, config, service, n))
    rng.shuffle(requests)
    times = sorted([start + int(rng.random() * span) for _ in requests])
    g.add_all(times, requests)
    return g.render()


def _fault_requests(g: _Gen, test_case: str, service: str, n: int,
                    share: tuple[float, float]) -> list[list[str]]:
    """The failing requests of an error test case that this service logs (none if unaffected):
    in the handling (primary) service, ``share`` of its ``n`` traffic events (their stack traces
    add continuation lines on top)."""
    fault = FAULTS.get(test_case)
    if fault is None:
        return []
    rng = g.rng
    if service == fault.primary:  # ~7 events a request; a stack trace on the 1st and 1 in 10
        k = max(1, round(n * rng.uniform(*share) / 7))
        return [_injected_request(g, fault, trace=i == 0 or rng.random() < 0.1) for i in range(k)]
    if service in fault.secondary:  # ~2.3 lines each
        k = max(1, round(n * rng.uniform(*SECONDARY_SHARE) / 2.3))
        return [_secondary_lines(g, fault) for _ in range(k)]
    return []


def shared_faults(config: SynthConfig) -> frozenset[str]:
    """The error test cases whose fault kind is shared (also fails in every test case at the
    background rate): a fixed share of them, chosen by a stable hash of the seed and name."""
    return _shared_faults(config.seed, config.shared_faults)


@functools.cache
def _shared_faults(seed: int, share: float) -> frozenset[str]:
    """:func:`shared_faults`, computed once per seed and share (every file asks)."""
    return frozenset(t for t in FAULTS if stable_seed(seed, "shared", t) % 10_000 < share * 10_000)


def _background_faults(g: _Gen, config: SynthConfig, service: str, n: int) -> list[list[str]]:
    """Failing requests of the shared fault kinds this service handles (or sees as a secondary
    service), at the background rate: in every test case, ``correct`` included. The expected
    count is rounded at random, so small files get one now and then."""
    kinds = [FAULTS[t] for t in sorted(shared_faults(config))
             if service == FAULTS[t].primary or service in FAULTS[t].secondary]
    if not kinds:
        return []
    rng = g.rng
    expected = n * rng.uniform(*config.background_faults) / 7
    k = int(expected) + (rng.random() < expected - int(expected))
    out = []
    for _ in range(k):
        fault = kinds[int(rng.random() * len(kinds))]
        if service == fault.primary:
            out.append(_injected_request(g, fault, trace=rng.random() < 0.1))
        else:
            out.append(_secondary_lines(g, fault))
    return out


# --------------------------------------------------------------------------- metrics


def render_metrics(config: SynthConfig, plan: RunPlan) -> tuple[str, int]:
    """A small metrics CSV: a header, then one row per 10 s (``timestamp``, ``test_name``,
    node_/go_ columns); returns the text and its line count."""
    rng = random.Random(stable_seed(config.seed, plan.name, "metrics"))
    header = (
        "timestamp,test_name,node_load1,node_memory_MemAvailable_bytes,node_cpu_seconds_total,"
        "node_network_receive_bytes_total,node_network_transmit_bytes_total,go_goroutines,"
        "go_memstats_alloc_bytes,go_gc_duration_seconds_sum"
    )
    rows = [header]
    load, mem, cpu, rx, tx, gor, alloc, gc = 1.0, 6_200_000_000, 5000.0, 10**8, 10**8, 40, 9e6, 3.0
    windows = plan.windows
    w = 0
    end_s = plan.end_ms // 1000
    for ts in range(plan.epoch, end_s + 1, METRICS_STEP_S):
        while w + 1 < len(windows) and windows[w + 1].start_ms <= ts * 1000:
            w += 1
        load = min(4.0, max(0.05, load + rng.uniform(-0.3, 0.3)))
        mem = min(7_500_000_000, max(4_000_000_000, mem + rng.randint(-40_000_000, 40_000_000)))
        cpu += rng.uniform(8.0, 19.5)
        rx += rng.randint(200_000, 2_500_000)
        tx += rng.randint(200_000, 2_500_000)
        gor = min(90, max(20, gor + rng.randint(-3, 3)))
        alloc = min(4e7, max(3e6, alloc + rng.uniform(-2e6, 2e6)))
        gc += rng.uniform(0.0005, 0.004)
        rows.append(
            f"{ts},{windows[w].test_case},{load:.2f},{mem},{cpu:.2f},{rx},{tx},{gor},"
            f"{int(alloc)},{gc:.6f}"
        )
    n_lines = len(rows)
    rows.append("")
    return "\n".join(rows), n_lines


#: v2 layout: the Prometheus series saved in each test case's ``metrics/`` folder, one
#: ``query_range`` response per file ``<name>.json`` (sampled every ``METRICS_STEP_S``).
TEST_CASE_METRICS: tuple[str, ...] = ("node_load1", "node_memory_MemAvailable_bytes")
_NODE_LABELS = {"instance": "node-exporter:9100", "job": "node"}


def render_test_case_metrics(config: SynthConfig, plan: RunPlan,
                             window: Window) -> dict[str, str]:
    """The ``metrics/`` files of one test case (v2 layout): file name -> compact JSON text
    (one line), in the Prometheus HTTP API's ``query_range`` shape
    (``{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {...},
    "values": [[ts, "value"], ...]}]}}``), one sample per 10 s of the window; ~0.5 KB a file."""
    rng = random.Random(stable_seed(config.seed, plan.name, window.test_case, "metrics"))
    first = -(-window.start_ms // 1000)
    stamps = range(first, (window.end_ms - 1) // 1000 + 1, METRICS_STEP_S)  # end exclusive
    load, mem = rng.uniform(0.3, 2.5), rng.randint(5_000_000_000, 7_000_000_000)
    loads, mems = [], []
    for ts in stamps:
        load = min(4.0, max(0.05, load + rng.uniform(-0.3, 0.3)))
        mem = min(7_500_000_000, max(4_000_000_000, mem + rng.randint(-40_000_000, 40_000_000)))
        loads.append([ts, f"{load:.2f}"])
        mems.append([ts, str(mem)])
    out = {}
    for name, values in zip(TEST_CASE_METRICS, (loads, mems), strict=True):
        body = {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": name, **_NODE_LABELS}, "values": values}]}}
        out[f"{name}.json"] = json.dumps(body, separators=(",", ":")) + "\n"
    return out


#: v2 layout: the folder of pre-run results beside the run folders (``<out>/logs/<this>/``);
#: it holds no ``.log`` file, so it is not a run.
PRE_RUN_FOLDER = "pre_run_results"
_STATUS_IN_NAME = re.compile(r"_(\d{3})(?:_|$)")


def render_pre_run_results(config: SynthConfig) -> dict[str, str]:
    """The files of ``PRE_RUN_FOLDER`` (v2 layout): path relative to it -> text.

    ``summary.json``: when the load generator checked the deployment (shortly before the
    first run) and how many test cases answered as expected; ``checks/test_cases.csv``: one
    row per test case (expected and observed HTTP status, latency). A function of the seed
    and ``start_epoch`` only (not of the number of runs).
    """
    rng = random.Random(stable_seed(config.seed, PRE_RUN_FOLDER))
    started = config.start_epoch - rng.randint(600, 1800)
    rows = ["test_case,expected_status,status,latency_ms,passed"]
    for test_case in TEST_CASES:
        m = _STATUS_IN_NAME.search(test_case)
        status = int(m.group(1)) if m else 200
        rows.append(f"{test_case},{status},{status},{rng.randint(4, 180)},true")
    summary = {
        "target": "light-oauth2",
        "started": started,
        "finished": started + rng.randint(60, 240),
        "test_cases": len(TEST_CASES),
        "passed": len(TEST_CASES),
        "failed": 0,
        "services": [service_file_name(s)[: -len(".log")] for s in SERVICES],
    }
    return {
        "summary.json": json.dumps(summary, indent=2) + "\n",
        "checks/test_cases.csv": "\n".join(rows) + "\n",
    }


# --------------------------------------------------------------------------- generate


def generate(out: Path, config: SynthConfig = SynthConfig()) -> SynthSummary:
    """Write ``out/logs/<run>/<test_case>/<service log>`` (and ``out/metrics/<run>.csv``);
    in the v2 layout also ``out/logs/pre_run_results/`` and (with ``metrics``)
    ``out/logs/<run>/<test_case>/metrics/*.json``, and runs may lack some error test cases.

    Existing files are overwritten; nothing else in ``out`` is touched.
    """
    began = time.perf_counter()
    out = Path(out)
    files = lines = size = 0
    plans = plan_runs(config)
    v2 = config.layout == "v2"
    with _Writer() as writer:
        if v2:
            for rel, text in render_pre_run_results(config).items():
                path = out / "logs" / PRE_RUN_FOLDER / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                size += writer.write(path, text)
                files += 1
                lines += text.count("\n")
        for plan in plans:
            for window in plan.windows:
                folder = out / "logs" / plan.name / window.test_case
                folder.mkdir(parents=True, exist_ok=True)
                for service in SERVICES:
                    text, n_lines = render_file(config, plan, window, service)
                    size += writer.write(folder / service_file_name(service), text)
                    files += 1
                    lines += n_lines
                if v2 and config.metrics:
                    (folder / "metrics").mkdir(exist_ok=True)
                    for name, text in render_test_case_metrics(config, plan, window).items():
                        size += writer.write(folder / "metrics" / name, text)
                        files += 1
                        lines += text.count("\n")
            if config.metrics:
                text, n_rows = render_metrics(config, plan)
                (out / "metrics").mkdir(parents=True, exist_ok=True)
                size += writer.write(out / "metrics" / f"{plan.name}.csv", text)
                files += 1
                lines += n_rows
    return SynthSummary(
        root=out,
        runs=[p.name for p in plans],
        files=files,
        lines=lines,
        bytes=size,
        seconds=time.perf_counter() - began,
    )


class _Writer:
    """Writes files on one background thread (file I/O releases the GIL), so generating the
    next file overlaps writing the previous one; errors surface in the caller."""

    MAX_PENDING = 8

    def __init__(self) -> None:
        """Start the writer thread."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-writer")
        self._pending: deque[Future[None]] = deque()

    def write(self, path: Path, text: str) -> int:
        """Queue ``text`` (UTF-8) for ``path``; return its byte count."""
        data = text.encode()
        self._pending.append(self._pool.submit(path.write_bytes, data))
        while len(self._pending) > self.MAX_PENDING:  # bound the memory held by the queue
            self._pending.popleft().result()
        return len(data)

    def __enter__(self) -> _Writer:
        """The writer itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait for every queued write (re-raising the first failure), then stop the thread."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


__all__ = [
    "FAULTS",
    "HARD_VALUES",
    "LO2_V2_VALUES",
    "LOST_RUN_SHARE",
    "LOST_TEST_CASES",
    "PRE_RUN_FOLDER",
    "RELATIVE_VOLUME",
    "TEST_CASE_METRICS",
    "Fault",
    "RunPlan",
    "SynthConfig",
    "SynthSummary",
    "Window",
    "abbreviate",
    "generate",
    "missing_test_cases",
    "plan_runs",
    "render_file",
    "render_metrics",
    "render_pre_run_results",
    "render_test_case_metrics",
    "shared_faults",
    "stable_seed",
]
