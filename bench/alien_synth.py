"""Independent ("alien") generator of LO2-shaped light-oauth2 logs, for out-of-generator checks.

Usage::

    python bench/alien_synth.py OUT --runs 24 --seed 1 --mode standard|hard [--rate 60] [--v1]

It writes ``OUT/logs/light-oauth2-data-<epoch>/<test_case>/light-oauth2-oauth2-<service>-1.log``
for every run, all 54 test cases and all 7 services, and prints one summary line.

What it models
--------------
Seven light-4j services (client, code, key, refresh-token, service, token, user) that share one
Hazelcast cluster backed by MySQL, logging through logback with the light-4j pattern
``HH:mm:ss.SSS [thread]  correlationId LEVEL logger method - message`` (logger names shortened
the way logback's ``%logger{36}`` does). Every request runs on an ``XNIO-1 task-N`` worker with a
22-character base64url correlation id and passes the light-4j chain (``ApiNormalisedPath`` path
lines, json-schema ``validate( ... )`` debug lines, the handler's own debug lines, JWT signing in
the token service, audit records). Map-store calls (``ClientMapStore``, ``UserMapStore``,
``ServiceMapStore``, ``RefreshTokenMapStore``) run on the Hazelcast partition thread of the member
that owns the key's partition, so they land in any of the seven logs with a blank correlation
id. Failing requests end in light-4j ``Status`` JSON (``{"statusCode":..,"code":"ERR12014",..}``),
either in a ``LightHttpHandler setExchangeStatus`` ERROR line or, in the token service, in an
``ApiException`` ERROR whose stack trace (when printed) carries the status. Map-store SQL
failures print JDBC/Hazelcast stack traces with ``Caused by:`` blocks. Container start-up
(config loading, Hikari, Hazelcast join with multi-line ``Members {size:N, ver:N} [`` blocks,
plugin list, listener) is written once per run, at the head of the first test case's files.

Facts followed (public): the LO2 layout, file names, test case names, service names, the line
format, v1/v2 timing, start-up placement; message texts, status codes and class names taken
from networknt/light-oauth2 and networknt/light-4j sources (status.yml descriptions,
``Status.toString()`` layout, ``LightHttpHandler`` error line, handler debug messages, map-store
``Load:``/``Store:``/``Delete:`` lines, ``Store audit info:`` lines, Server start messages).

Own choices (not pinned by the facts): which endpoint and status each error test case maps to
(``KIND_SERVICES``, the ``*_fail`` methods); traffic mix and rates of each service (``--rate`` is
the token service's mean lines per second, the other services get the fixed smaller shares in
``RATE_SHARE``); a run-level and a test-case-level load factor (0.85-1.15 each); thread pools;
partition ownership; ambient failures present in every test case, ``correct`` included (replayed
authorization codes and rotated refresh tokens in the token service, foreign-key failures of
client deletes); trace probabilities; id formats; the Hazelcast version and IP addresses;
durations drawn as 20 + 160 * u**3 seconds (range 20-180 s, mean 60 s) so a run stays near
300 k lines at the default rate; at least one failing request per error case in the file of the
service that handles it (two in standard mode), even where the rate rounds to zero.

Modes: ``standard`` puts 2-8 % failing requests of the case's kind into the handling service
and nothing else that fails beyond the ambient failures. ``hard`` puts only 0.5-2 % there, adds
to every test case (``correct`` included) a background of failing requests of each kind listed
in ``FREQUENCY_ONLY`` (per file a Poisson count with mean max(0.1-0.3 % of the service's
requests, 0.5)), so those 23 error cases add no new line shape, only more of shapes that
``correct`` has too; and it draws values of random lengths and alphabets (secrets with symbols,
letter-only names, random-length ids, occasional non-ASCII after ``Basic ``). ``--v1`` switches
the timing to LO2 v1: ``correct`` first for 60 s, then the 53 error cases in a fixed order (the
order of ``ERROR_CASES``), 10 s each. Output is deterministic for the same arguments, and the
first N runs do not depend on ``--runs``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import random
import string
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SERVICES: tuple[str, ...] = ("client", "code", "key", "refresh-token", "service", "token", "user")
CORRECT = "correct"
ERROR_CASES: tuple[str, ...] = (
    "access_token_auth_header_error_401",
    "access_token_authorization_form_401",
    "access_token_client_id_not_found_404",
    "access_token_client_secret_wrong_401",
    "access_token_form_urlencoded_400",
    "access_token_illegal_grant_type_400",
    "access_token_missing_authorization_header_400",
    "authorization_code_client_id_missing_400",
    "authorization_code_invalid_client_id_404",
    "authorization_code_invalid_password_401",
    "authorization_code_missing_response_type_400",
    "authorization_code_response_not_code_400",
    "code_challenge_invalid_format_pkce_400",
    "code_challenge_too_long_pkce_400",
    "code_challenge_too_short_pkce_400",
    "code_verifier_missing_pkce_400",
    "code_verifier_too_long_pkce_400",
    "code_verifier_too_short_pkce_400",
    "delete_client_404_no_client",
    "delete_service_404_no_service",
    "delete_token_404",
    "delete_user_404_no_user",
    "get_client_404_no_client",
    "get_client_page_400_no_page",
    "get_service_404_no_service",
    "get_service_page_400_no_page",
    "get_token_404",
    "get_token_page_400_no_page",
    "get_user_404_no_user",
    "get_user_page_400_no_page",
    "invalid_code_challenge_method_pkce_400",
    "invalid_code_verifier_format_PKCE_400",
    "register_client_400_clientProfile",
    "register_client_400_clientType",
    "register_client_404_no_user",
    "register_service_400_service_id",
    "register_service_400_service_type",
    "register_service_404_no_user",
    "register_user_400_email_exists",
    "register_user_400_no_password",
    "register_user_400_password_no_match",
    "register_user_400_user_exists",
    "update_client_400_clientProfile",
    "update_client_400_clientType",
    "update_client_404_clientId",
    "update_client_404_ownerId",
    "update_password_400_not_match",
    "update_password_401_wrong_password",
    "update_password_404_user_not_found",
    "update_service_404_service_id",
    "update_service_404_user_id",
    "update_user_404_no_user",
    "verification_failed_pkce_400",
)
TEST_CASES: tuple[str, ...] = (CORRECT, *ERROR_CASES)


def _kind_services() -> dict[str, tuple[str, ...]]:
    """Services that log each error kind: the handling service first, then a companion."""
    out: dict[str, tuple[str, ...]] = {}
    for kind in ERROR_CASES:
        if kind.startswith("access_token"):
            out[kind] = ("token",)
        elif kind.startswith(("code_verifier", "invalid_code_verifier", "verification_failed")):
            out[kind] = ("token", "code")  # the code service issued the PKCE code first
        elif kind.startswith(("authorization_code", "code_challenge", "invalid_code_challenge")):
            out[kind] = ("code",)
        elif kind.endswith("_token_404") or kind == "get_token_page_400_no_page":
            out[kind] = ("refresh-token",)
        elif "client" in kind:
            out[kind] = ("client",)
        elif "service" in kind:
            out[kind] = ("service",)
        else:
            out[kind] = ("user",)
    return out


KIND_SERVICES: dict[str, tuple[str, ...]] = _kind_services()

# Error kinds that (in --mode hard) also fail at a low background rate in every test case, so
# their own test case adds no new line shape, only more of shapes that `correct` has too.
FREQUENCY_ONLY: frozenset[str] = frozenset(
    {
        "access_token_authorization_form_401",
        "access_token_client_id_not_found_404",
        "access_token_client_secret_wrong_401",
        "access_token_illegal_grant_type_400",
        "access_token_missing_authorization_header_400",
        "authorization_code_invalid_client_id_404",
        "authorization_code_invalid_password_401",
        "code_verifier_missing_pkce_400",
        "verification_failed_pkce_400",
        "delete_client_404_no_client",
        "get_client_404_no_client",
        "register_client_404_no_user",
        "update_client_404_clientId",
        "delete_service_404_no_service",
        "get_service_404_no_service",
        "delete_token_404",
        "get_token_404",
        "delete_user_404_no_user",
        "get_user_404_no_user",
        "register_user_400_email_exists",
        "register_user_400_user_exists",
        "update_password_401_wrong_password",
        "update_user_404_no_user",
    }
)

# light-4j status.yml entries used here: code -> (HTTP status, message, description template).
STATUS: dict[str, tuple[int, str, str]] = {
    "ERR10010": (500, "RUNTIME_EXCEPTION", "Unexpected runtime exception"),
    "ERR10014": (400, "GENERIC_EXCEPTION", "Generic Exception {}."),
    "ERR11000": (
        400,
        "VALIDATOR_REQUEST_PARAMETER_QUERY_MISSING",
        "Query parameter {} is required on path {} but not found in request.",
    ),
    "ERR11002": (
        400,
        "VALIDATOR_REQUEST_PARAMETER_ENUM_INVALID",
        "Value {} for parameter {} is not allowed. Allowed values are <{}>.",
    ),
    "ERR11004": (400, "VALIDATOR_SCHEMA", "Schema Validation Error - {}"),
    "ERR11017": (
        400,
        "VALIDATOR_REQUEST_PARAMETER_HEADER_MISSING",
        "Header parameter {} is required on path {} but not found in request.",
    ),
    "ERR12000": (
        400,
        "UNABLE_TO_PARSE_FORM_DATA",
        "Unable to parse x-www-form-urlencoded form data.",
    ),
    "ERR12001": (
        400,
        "UNSUPPORTED_GRANT_TYPE",
        "Unsupported grant type {}. Only authorization_code and client_credentials are supported.",
    ),
    "ERR12003": (401, "INVALID_AUTHORIZATION_HEADER", "Invalid authorization header {}."),
    "ERR12004": (401, "INVALID_BASIC_CREDENTIALS", "Invalid Basic credentials {}."),
    "ERR12007": (401, "UNAUTHORIZED_CLIENT", "Unauthorized client with wrong client secret."),
    "ERR12008": (401, "INVALID_AUTHORIZATION_CODE", "Invalid Authorization Code {}."),
    "ERR12011": (
        400,
        "PASSWORD_OR_PASSWORDCONFIRM_EMPTY",
        "Password {} or PasswordConfirm {} is empty.",
    ),
    "ERR12012": (
        400,
        "PASSWORD_PASSWORDCONFIRM_NOT_MATCH",
        "Password {} and PasswordConfirm {} are not matched.",
    ),
    "ERR12013": (404, "USER_NOT_FOUND", "User {} is not found."),
    "ERR12014": (404, "CLIENT_NOT_FOUND", "Client {} is not found."),
    "ERR12015": (404, "SERVICE_NOT_FOUND", "Service {} is not found."),
    "ERR12016": (401, "INCORRECT_PASSWORD", "Incorrect password."),
    "ERR12020": (400, "USER_ID_EXISTS", "User id {} exists."),
    "ERR12021": (400, "EMAIL_EXISTS", "Email {} exists."),
    "ERR12029": (404, "REFRESH_TOKEN_NOT_FOUND", "Refresh token {} is not found."),
    "ERR12033": (400, "INVALID_CODE_CHALLENGE_METHOD", "Invalid PKCE code challenge method {}."),
    "ERR12034": (
        400,
        "CODE_CHALLENGE_TOO_SHORT",
        "PKCE codeChallenge length under lower limit, codeChallenge = {}",
    ),
    "ERR12035": (
        400,
        "CODE_CHALLENGE_TOO_LONG",
        "PKCE codeChallenge length over upper limit, codeChallenge = {}",
    ),
    "ERR12036": (
        400,
        "INVALID_CODE_CHALLENGE_FORMAT",
        "PKCE codeChallenge format is invalid, codeChallenge = {}",
    ),
    "ERR12037": (
        400,
        "INVALID_CODE_VERIFIER_FORMAT",
        "PKCE codeVerifier format is invalid, codeVerifier = {}",
    ),
    "ERR12038": (
        400,
        "CODE_VERIFIER_TOO_SHORT",
        "PKCE codeVerifier length under lower limit , codeVerifier = {}",
    ),
    "ERR12039": (
        400,
        "CODE_VERIFIER_TOO_LONG",
        "PKCE codeVerifier length over upper limit , codeVerifier = {}",
    ),
    "ERR12040": (400, "CODE_VERIFIER_MISSING", "PKCE codeVerifier is not specified"),
    "ERR12041": (400, "CODE_VERIFIER_FAILED", "PKCE verification failed"),
}

# Share of the token service's line rate that each service produces (own choice).
RATE_SHARE: dict[str, float] = {
    "token": 1.0,
    "code": 0.2,
    "refresh-token": 0.07,
    "client": 0.06,
    "user": 0.05,
    "service": 0.04,
    "key": 0.03,
}
# Mean lines a request of each service writes (measured on this generator; sets request rates).
LINES_PER_REQUEST: dict[str, float] = {
    "token": 6.9,
    "code": 10.1,
    "refresh-token": 4.8,
    "client": 5.7,
    "user": 5.4,
    "service": 5.7,
    "key": 28.9,
}
HTTPS_PORT: dict[str, int] = {
    "code": 6881,
    "token": 6882,
    "service": 6883,
    "client": 6884,
    "user": 6885,
    "key": 6886,
    "refresh-token": 6887,
}
AUDIT_NAME: dict[str, str] = {
    "client": "CLIENT",
    "code": "CODE",
    "service": "SERVICE",
    "user": "USER",
    "refresh-token": "REFRESHTOKEN",
    "key": "KEY",
}
SERVICE_SUFFIX: dict[str, str] = {s: s.replace("-", "") for s in SERVICES}

REDIRECT = "http://localhost:8080/authorization"
HZ_VERSION = "3.12.6"
HZ_PARTITIONS = 271
HZ_PARTITION_THREADS = 16
EPOCH0 = 1718000000
TRACE_P = 0.35  # share of token ApiException lines followed by a printed stack trace
BACKGROUND_MIN = 0.5  # hard mode: least mean count of each background kind per file

# Loggers (full names; shortened like logback %logger{36} when printed).
API_PATH = "com.networknt.openapi.ApiNormalisedPath"
TYPE_V = "com.networknt.schema.TypeValidator"
ENUM_V = "com.networknt.schema.EnumValidator"
REQUIRED_V = "com.networknt.schema.RequiredValidator"
PROPS_V = "com.networknt.schema.PropertiesValidator"
JWT = "com.networknt.security.JwtIssuer"
CONFIG = "com.networknt.config.Config"
LIGHT = "com.networknt.handler.LightHttpHandler"
EXC = "com.networknt.exception.ExceptionHandler"
AUDIT = "com.networknt.oauth.cache.AuditInfoHandler"
SERVER = "com.networknt.server.Server"
TOKEN_H = "com.networknt.oauth.token.handler.Oauth2TokenPostHandler"
CODE_GET = "com.networknt.oauth.code.handler.Oauth2CodeGetHandler"
CODE_IDM = "com.networknt.oauth.code.security.LightIdentityManager"
UNDERTOW_SEC = "io.undertow.request.security"
KEY_H = "com.networknt.oauth.key.handler.Oauth2KeyKeyIdGetHandler"
RT_GET = "com.networknt.oauth.token.handler.Oauth2RefreshTokenGetHandler"
MAP_STORE = {
    "clients": "com.networknt.oauth.cache.ClientMapStore",
    "users": "com.networknt.oauth.cache.UserMapStore",
    "services": "com.networknt.oauth.cache.ServiceMapStore",
    "tokens": "com.networknt.oauth.cache.RefreshTokenMapStore",
}
CLIENT_TYPES = ("public", "confidential", "trusted", "external")
CLIENT_PROFILES = ("webserver", "mobile", "browser", "service", "batch")
SERVICE_TYPES = ("swagger", "openapi", "graphql", "hybrid")
USER_TYPES = ("admin", "employee", "customer", "partner")
# fmt: off
WORDS = (
    "Account", "Viewer", "Pet", "Store", "Market", "Place", "Light", "Portal", "Customer",
    "Order", "Payment", "Report", "Batch", "Mobile", "Web", "Admin", "Gateway", "Hub", "Cart",
)
# fmt: on
FIRST_NAMES = ("Steve", "Maria", "John", "Olga", "Wei", "Anna", "Ravi", "Lena", "Tom", "Sara")
LAST_NAMES = ("Hu", "Smith", "Garcia", "Ivanova", "Chen", "Kumar", "Novak", "Brown", "Lee")
SECRET_CHARS = string.ascii_letters + string.digits + "!#$%&*+-./:;=?@^_~()[]{}<>|,"
ID_CHARS = string.ascii_letters + string.digits + "-_."
PKCE_CHARS = string.ascii_letters + string.digits + "-._~"
NON_ASCII = "äöüßéèêçñøåæœÄÖÜÉÑØÅÆЖЯжяλπΩ€£¥中文日本語한국ÿþ"


# --------------------------------------------------------------------------- small helpers


def stable_seed(*parts: object) -> int:
    """64-bit seed from the parts' text (stable across processes, unlike hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def abbreviate(name: str, target: int = 36) -> str:
    """Shorten a logger name like logback's TargetLengthBasedClassNameAbbreviator."""
    if len(name) < target:
        return name
    parts = name.split(".")
    to_trim = len(name) - target
    out: list[str] = []
    for part in parts[:-1]:
        if to_trim > 0 and part:
            out.append(part[0])
            to_trim -= len(part) - 1
        else:
            out.append(part)
    out.append(parts[-1])
    return ".".join(out)


_HEADS: dict[tuple[str, str, str], str] = {}


def head(level: str, logger: str, method: str) -> str:
    """The ``LEVEL logger method - `` part of a line (cached)."""
    key = (level, logger, method)
    text = _HEADS.get(key)
    if text is None:
        text = f"{level:<5} {abbreviate(logger)} {method} - "
        _HEADS[key] = text
    return text


_HMS: dict[int, str] = {}


def stamp(t_ms: float) -> str:
    """``HH:mm:ss.SSS`` (UTC time of day) of an absolute time in milliseconds."""
    sec, milli = divmod(int(t_ms), 1000)
    hms = _HMS.get(sec)
    if hms is None:
        day = sec % 86400
        hms = f"{day // 3600:02d}:{day // 60 % 60:02d}:{day % 60:02d}"
        _HMS[sec] = hms
    return f"{hms}.{milli:03d}"


def status_json(code: str, *args: object) -> str:
    """light-4j ``Status.toString()`` of a status.yml entry (description not escaped)."""
    http, name, desc = STATUS[code]
    if args:
        desc = desc.format(*args)
    return (
        f'{{"statusCode":{http},"code":"{code}","message":"{name}",'
        f'"description":"{desc}","severity":"ERROR"}}'
    )


def java_line(cls: str, method: str) -> int:
    """A fixed, plausible source line number for a frame."""
    return 30 + zlib.crc32(f"{cls}#{method}".encode()) % 420


def frame(cls: str, method: str, line: int | None = None) -> str:
    """One ``\\tat`` stack-trace line."""
    simple = cls.rsplit(".", 1)[-1].split("$", 1)[0]
    return f"\tat {cls}.{method}({simple}.java:{line or java_line(cls, method)})"


def basic(user: str, secret: str) -> str:
    """HTTP Basic header value."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def body_json(body: dict[str, object]) -> str:
    """Jackson-like compact JSON of a request body."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# Request-thread frames below a handler: light-4j chain, Undertow, JBoss threads.
CHAIN_TAIL: tuple[str, ...] = (
    frame("com.networknt.handler.Handler", "next", 233),
    frame("com.networknt.openapi.ValidatorHandler", "handleRequest", 112),
    frame("com.networknt.handler.Handler", "next", 233),
    frame("com.networknt.body.BodyHandler", "handleRequest", 122),
    frame("com.networknt.handler.Handler", "next", 233),
    frame("com.networknt.openapi.OpenApiHandler", "handleRequest", 130),
    frame("com.networknt.handler.Handler", "next", 233),
    frame("com.networknt.correlation.CorrelationHandler", "handleRequest", 95),
    frame("com.networknt.handler.Handler", "next", 233),
    frame("com.networknt.exception.ExceptionHandler", "handleRequest", 72),
    frame("com.networknt.handler.Handler", "next", 233),
    frame("com.networknt.handler.OrchestrationHandler", "handleRequest", 51),
    frame("io.undertow.server.handlers.SetHeaderHandler", "handleRequest", 90),
    frame("io.undertow.server.handlers.GracefulShutdownHandler", "handleRequest", 94),
    frame("io.undertow.server.Connectors", "executeRootHandler", 376),
    frame("io.undertow.server.HttpServerExchange$1", "run", 830),
    frame("org.jboss.threads.ContextClassLoaderSavingRunnable", "run", 35),
    frame("org.jboss.threads.EnhancedQueueExecutor", "safeRun", 1982),
    frame("org.jboss.threads.EnhancedQueueExecutor$ThreadBody", "doRunTask", 1486),
    frame("org.jboss.threads.EnhancedQueueExecutor$ThreadBody", "run", 1377),
    "\tat java.base/java.lang.Thread.run(Thread.java:829)",
)
JDBC_UPDATE: tuple[str, ...] = (
    frame("com.mysql.cj.jdbc.exceptions.SQLError", "createSQLException", 117),
    frame("com.mysql.cj.jdbc.exceptions.SQLExceptionsMapping", "translateException", 122),
    frame("com.mysql.cj.jdbc.ClientPreparedStatement", "executeInternal", 953),
    frame("com.mysql.cj.jdbc.ClientPreparedStatement", "executeUpdateInternal", 1092),
    frame("com.mysql.cj.jdbc.ClientPreparedStatement", "executeUpdateInternal", 1040),
    frame("com.mysql.cj.jdbc.ClientPreparedStatement", "executeLargeUpdate", 1347),
    frame("com.mysql.cj.jdbc.ClientPreparedStatement", "executeUpdate", 1025),
    frame("com.zaxxer.hikari.pool.ProxyPreparedStatement", "executeUpdate", 61),
    "\tat com.zaxxer.hikari.pool.HikariProxyPreparedStatement.executeUpdate"
    "(HikariProxyPreparedStatement.java)",
)
HZ_DELETE: tuple[str, ...] = (
    frame("com.hazelcast.map.impl.MapStoreWrapper", "delete", 115),
    frame("com.hazelcast.map.impl.mapstore.writethrough.WriteThroughStore", "remove", 56),
    frame("com.hazelcast.map.impl.recordstore.DefaultRecordStore", "delete", 567),
    frame("com.hazelcast.map.impl.operation.DeleteOperation", "run", 38),
    frame("com.hazelcast.spi.impl.operationservice.impl.OperationRunnerImpl", "run", 194),
    frame("com.hazelcast.spi.impl.operationservice.impl.OperationRunnerImpl", "run", 406),
    frame("com.hazelcast.spi.impl.operationexecutor.impl.OperationThread", "process", 115),
    frame("com.hazelcast.spi.impl.operationexecutor.impl.OperationThread", "run", 100),
)
HZ_INVOKE: tuple[str, ...] = (
    "\tat ------ submitted from ------.(Unknown Source)",
    frame("com.hazelcast.spi.impl.operationservice.impl.InvocationFuture", "resolve", 126),
    frame("com.hazelcast.spi.impl.AbstractInvocationFuture", "join", 546),
    frame("com.hazelcast.map.impl.proxy.MapProxySupport", "invokeOperation", 442),
    frame("com.hazelcast.map.impl.proxy.MapProxySupport", "deleteInternal", 670),
    frame("com.hazelcast.map.impl.proxy.MapProxyImpl", "delete", 253),
)
FK_TEXT = {
    "clients": "(`oauth2`.`client_service`, CONSTRAINT `client_service_ibfk_1` FOREIGN KEY "
    "(`client_id`) REFERENCES `client` (`client_id`))",
}
MIDDLEWARE = (
    "com.networknt.exception.ExceptionHandler",
    "com.networknt.metrics.MetricsHandler",
    "com.networknt.traceability.TraceabilityHandler",
    "com.networknt.correlation.CorrelationHandler",
    "com.networknt.openapi.OpenApiHandler",
    "com.networknt.body.BodyHandler",
    "com.networknt.audit.AuditHandler",
    "com.networknt.sanitizer.SanitizerHandler",
    "com.networknt.openapi.ValidatorHandler",
)
# fmt: off
CONFIG_FILES = (
    "startup.yml", "server.yml", "secret.yml", "service.yml", "datasource.yml", "status.yml",
    "handler.yml", "openapi.yaml", "openapi-security.yml", "openapi-validator.yml", "body.yml",
    "audit.yml", "correlation.yml", "cors.yml",
)
# fmt: on


# --------------------------------------------------------------------------- values


class Values:
    """Ids, secrets and names; ``hard`` draws random lengths and mixed alphabets."""

    def __init__(self, rng: random.Random, hard: bool) -> None:
        self.rng = rng
        self.hard = hard

    def _bytes16(self) -> bytearray:
        raw = bytearray(self.rng.getrandbits(128).to_bytes(16, "big"))
        raw[6] = (raw[6] & 0x0F) | 0x40
        raw[8] = (raw[8] & 0x3F) | 0x80
        return raw

    def uuid(self) -> str:
        h = self._bytes16().hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def b64id(self) -> str:
        """light-4j ``Util.getUUID()``: a UUID as 22 base64url characters."""
        return base64.urlsafe_b64encode(bytes(self._bytes16())).decode()[:22]

    def hex8(self) -> str:
        return f"{self.rng.getrandbits(32):08x}"

    def text(self, chars: str, lo: int, hi: int) -> str:
        return "".join(self.rng.choices(chars, k=self.rng.randint(lo, hi)))

    def letters(self, lo: int, hi: int) -> str:
        word = self.text(string.ascii_lowercase, lo, hi)
        return word.capitalize() if self.rng.random() < 0.5 else word

    def client_id(self) -> str:
        if self.hard and self.rng.random() < 0.15:
            return self.text(ID_CHARS, 4, 40)
        return self.uuid()

    def secret(self) -> str:
        return self.text(SECRET_CHARS, 8, 40) if self.hard else self.b64id()

    def user_id(self) -> str:
        if not self.hard:
            return self.hex8()
        x = self.rng.random()
        if x < 0.3:
            return self.hex8()
        if x < 0.65:
            return self.letters(2, 18)
        return self.text(ID_CHARS, 2, 26)

    def service_id(self) -> str:
        if not self.hard:
            return self.hex8()
        return self.text(ID_CHARS, 3, 24) if self.rng.random() < 0.7 else self.letters(3, 20)

    def password(self) -> str:
        if self.hard:
            return self.text(SECRET_CHARS, 1, 40)
        return self.text(string.ascii_letters + string.digits, 8, 14)

    def name(self) -> str:
        if self.hard:
            return self.letters(1, 24)
        return self.rng.choice(WORDS) + self.rng.choice(WORDS)

    def person(self) -> tuple[str, str]:
        if self.hard:
            return self.letters(1, 16), self.letters(1, 22)
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def email(self, user: str) -> str:
        if not self.hard:
            return f"{user}@networknt.com"
        local = self.text(string.ascii_lowercase + string.digits + "._+-", 1, 30)
        return f"{local}@{self.letters(2, 14).lower()}.{self.rng.choice(('com', 'org', 'io'))}"

    def state(self) -> str:
        if self.hard:
            return self.text(string.ascii_letters + string.digits, 1, 32)
        return str(self.rng.randint(1000, 999999))

    def verifier(self, lo: int = 43, hi: int = 128) -> str:
        return self.text(PKCE_CHARS, lo, hi)

    def non_ascii(self) -> str:
        mix = NON_ASCII + string.ascii_letters + "=/+"
        return self.text(mix, 4, 48)


def poisson(rng: random.Random, mean: float) -> int:
    """Poisson draw (Knuth; means here stay small)."""
    limit = math.exp(-mean)
    n, prod = 0, rng.random()
    while prod > limit:
        n += 1
        prod *= rng.random()
    return n


def s256(verifier: str) -> str:
    """PKCE S256 code challenge of a verifier."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


# --------------------------------------------------------------------------- run plan


@dataclass
class Window:
    """One test case of a run: its log window and where traffic starts."""

    test_case: str
    start: float  # absolute ms: first line may be written here (container start if first)
    traffic_start: float
    end: float
    first: bool


@dataclass
class RunPlan:
    """Everything decided once per run."""

    index: int
    epoch: int
    windows: list[Window]
    join_order: list[str]
    ips: dict[str, str]
    member_uuid: dict[str, str]
    start_at: dict[str, float]
    workers: dict[str, list[int]]
    load: float
    ambient_token: float
    ambient_fk: float
    background: float


def plan_runs(seed: int, runs: int, v1: bool) -> list[RunPlan]:
    """Run order, durations, cluster layout and run-level rates for all runs."""
    epoch_rng = random.Random(stable_seed(seed, "epochs", v1))
    epoch = EPOCH0 + epoch_rng.randrange(0, 3600)
    plans: list[RunPlan] = []
    for r in range(runs):
        prng = random.Random(stable_seed(seed, r, "plan", v1))
        values = Values(prng, hard=False)
        join_order = list(SERVICES)
        prng.shuffle(join_order)
        subnet = prng.randint(17, 29)
        hosts = prng.sample(range(2, 14), len(SERVICES))
        ips = {s: f"172.{subnet}.0.{h}" for s, h in zip(SERVICES, hosts, strict=True)}
        t0 = epoch * 1000.0 + prng.uniform(1500, 6000)
        start_at: dict[str, float] = {}
        t = t0 + prng.uniform(300, 1500)
        for s in join_order:
            start_at[s] = t
            t += prng.uniform(400, 2600)
        traffic0 = t + prng.uniform(7000, 12000)  # last container has joined and bound
        if v1:
            order = list(TEST_CASES)
            durations = [60.0] + [10.0] * len(ERROR_CASES)
        else:
            order = list(TEST_CASES)
            prng.shuffle(order)
            durations = [20.0 + 160.0 * prng.random() ** 3 for _ in order]
        windows: list[Window] = []
        cursor = t0
        for i, (tc, dur) in enumerate(zip(order, durations, strict=True)):
            traffic_start = traffic0 if i == 0 else cursor + prng.uniform(150, 900)
            end = traffic_start + dur * 1000.0
            windows.append(Window(tc, cursor, traffic_start, end, i == 0))
            cursor = end + prng.uniform(800, 2500 if v1 else 6000)
        workers = {s: sorted(prng.sample(range(1, 17), prng.randint(3, 6))) for s in SERVICES}
        plans.append(
            RunPlan(
                index=r,
                epoch=epoch,
                windows=windows,
                join_order=join_order,
                ips=ips,
                member_uuid={s: values.uuid() for s in SERVICES},
                start_at=start_at,
                workers=workers,
                load=prng.uniform(0.85, 1.15),
                ambient_token=prng.uniform(0.006, 0.016),
                ambient_fk=prng.uniform(0.02, 0.08),
                background=prng.uniform(0.001, 0.003),
            )
        )
        epoch = int(cursor / 1000.0) + epoch_rng.randint(2 * 3600, 5 * 3600)
    return plans


# --------------------------------------------------------------------------- log buffers


class Buf:
    """Events of one log file: (sort key, text); text may hold continuation lines."""

    __slots__ = ("events", "seq")

    def __init__(self) -> None:
        self.events: list[tuple[int, str]] = []
        self.seq = 0

    def add(self, t: float, text: str) -> None:
        self.seq += 1
        self.events.append(((int(t) << 22) | self.seq, text))

    def render(self) -> str:
        self.events.sort()
        return "\n".join(text for _, text in self.events)


class Req:
    """One request (or one start-up sequence) on one thread: lines advance its clock."""

    __slots__ = ("buf", "cid", "rng", "t", "thread")

    def __init__(self, buf: Buf, rng: random.Random, t: float, thread: str, cid: str) -> None:
        self.buf = buf
        self.rng = rng
        self.t = t
        self.thread = thread
        self.cid = cid

    def log(
        self,
        level: str,
        logger: str,
        method: str,
        msg: str,
        dt: float | None = None,
        cont: list[str] | None = None,
        pre: list[str] | None = None,
    ) -> None:
        """Write one line; ``cont`` follows it, ``pre`` (raw stdout lines) precedes it."""
        self.t += self.rng.random() * 0.7 if dt is None else dt
        text = f"{stamp(self.t)} [{self.thread}]  {self.cid} {head(level, logger, method)}{msg}"
        if cont:
            text = text + "\n" + "\n".join(cont)
        if pre:
            text = "\n".join(pre) + "\n" + text
        self.buf.add(self.t, text)

    def debug(self, logger: str, method: str, msg: str, dt: float | None = None) -> None:
        self.log("DEBUG", logger, method, msg, dt)

    def info(self, logger: str, method: str, msg: str, dt: float | None = None) -> None:
        self.log("INFO", logger, method, msg, dt)


# --------------------------------------------------------------------------- entities


@dataclass
class Client:
    client_id: str
    secret: str
    name: str
    client_type: str
    profile: str
    owner: str


@dataclass
class User:
    user_id: str
    email: str
    password: str
    first: str
    last: str
    user_type: str


@dataclass
class Service:
    service_id: str
    name: str
    service_type: str
    owner: str


@dataclass
class Pools:
    """Entities the load generator works with during one test case."""

    clients: list[Client] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


def make_pools(rng: random.Random, hard: bool) -> Pools:
    v = Values(rng, hard)
    pools = Pools()
    pools.users.append(User("admin", "admin@networknt.com", "123456", "Steve", "Hu", "admin"))
    for _ in range(rng.randint(10, 30)):
        uid = v.user_id()
        first, last = v.person()
        pools.users.append(
            User(uid, v.email(uid), v.password(), first, last, rng.choice(USER_TYPES[1:]))
        )
    for _ in range(rng.randint(15, 40)):
        owner = rng.choice(pools.users).user_id
        pools.clients.append(
            Client(
                v.client_id(),
                v.secret(),
                v.name(),
                rng.choice(CLIENT_TYPES),
                rng.choice(CLIENT_PROFILES),
                owner,
            )
        )
    for _ in range(rng.randint(8, 25)):
        owner = rng.choice(pools.users).user_id
        pools.services.append(Service(v.service_id(), v.name(), rng.choice(SERVICE_TYPES), owner))
    pools.tokens = [v.uuid() for _ in range(rng.randint(20, 60))]
    return pools


def _pem(seed: int, lines: int) -> list[str]:
    rng = random.Random(seed)
    raw = bytes(rng.getrandbits(8) for _ in range(48 * lines - 20))
    text = base64.b64encode(raw).decode()
    body = [text[i : i + 64] for i in range(0, len(text), 64)]
    return [*body, "-----END CERTIFICATE-----"]


PEM = {"100": _pem(100, 19), "101": _pem(101, 21)}


# --------------------------------------------------------------------------- one test case


class CaseGen:
    """Generates the seven log files of one test case of one run."""

    def __init__(self, plan: RunPlan, win: Window, seed: int, hard: bool, rate: float) -> None:
        self.plan = plan
        self.win = win
        self.seed = seed
        self.hard = hard
        self.rate = rate
        self.bufs: dict[str, Buf] = {s: Buf() for s in SERVICES}
        crng = random.Random(stable_seed(seed, plan.index, win.test_case, "case"))
        self.case_load = crng.uniform(0.85, 1.15)
        self.fail_share = crng.uniform(0.005, 0.02) if hard else crng.uniform(0.02, 0.08)
        self.pools = make_pools(crng, hard)
        self.host = "localhost"
        self.busy: dict[str, dict[int, float]] = {
            s: dict.fromkeys(plan.workers[s], 0.0) for s in SERVICES
        }
        self.background: dict[str, list[str]] = {s: [] for s in SERVICES}
        if hard:
            for kind in sorted(FREQUENCY_ONLY):
                self.background[KIND_SERVICES[kind][0]].append(kind)

    # ----------------------------------------------------------------- plumbing

    def run(self) -> dict[str, str]:
        if self.win.first:
            for svc in SERVICES:
                self.startup(svc)
        for svc in SERVICES:
            self.traffic(svc)
        return {svc: self.bufs[svc].render() for svc in SERVICES}

    def thread_for(self, svc: str, t: float, rng: random.Random) -> tuple[str, float]:
        """A free XNIO worker of the service (or the one that frees up first)."""
        busy = self.busy[svc]
        free = [n for n, until in busy.items() if until <= t]
        if free:
            n = rng.choice(free)
        else:
            n = min(busy, key=busy.__getitem__)
            t = busy[n] + rng.uniform(0.1, 1.5)
        return f"XNIO-1 task-{n}", t

    def hz(self, r: Req, store: str, op: str, key: str, cont: list[str] | None = None) -> None:
        """A map-store call, logged by the member owning the key's partition."""
        part = zlib.crc32(key.encode()) % HZ_PARTITIONS
        owner = self.plan.join_order[part % len(SERVICES)]
        thread = f"hz._hzInstance_1_dev.partition-operation.thread-{part % HZ_PARTITION_THREADS}"
        r.t += r.rng.uniform(0.4, 2.5)
        word = {"load": "Load", "store": "Store", "delete": "Delete"}[op]
        text = f"{stamp(r.t)} [{thread}]   {head('DEBUG', MAP_STORE[store], op)}{word}:{key}"
        self.bufs[owner].add(r.t, text)
        if op == "store" and store != "tokens":  # these store() methods call load() first
            r.t += r.rng.uniform(0.2, 1.2)
            text = f"{stamp(r.t)} [{thread}]   {head('DEBUG', MAP_STORE[store], 'load')}Load:{key}"
            self.bufs[owner].add(r.t, text)
        if cont is not None:
            r.t += r.rng.uniform(2.0, 30.0)
            for _ in range(1 + (r.rng.random() < 0.4)):
                r.t += r.rng.uniform(0.5, 11.0)
                text = f"{stamp(r.t)} [{thread}]   {head('ERROR', MAP_STORE[store], op)}Exception:"
                if cont:
                    text += "\n" + "\n".join(cont)
                self.bufs[owner].add(r.t, text)

    def traffic(self, svc: str) -> None:
        rng = random.Random(stable_seed(self.seed, self.plan.index, self.win.test_case, svc))
        values = Values(rng, self.hard)
        lines_per_s = self.rate * RATE_SHARE[svc] * self.plan.load * self.case_load
        per_ms = lines_per_s / LINES_PER_REQUEST[svc] / 1000.0
        start = self.win.traffic_start + rng.uniform(20, 900)
        end = self.win.end - rng.uniform(50, 600)
        times: list[float] = []
        t = start + rng.expovariate(per_ms)
        while t < end:
            times.append(t)
            t += rng.expovariate(per_ms)
        kind = self.win.test_case
        own = 0
        if kind != CORRECT and svc in KIND_SERVICES[kind]:
            own = max(1 if self.hard else 2, round(len(times) * self.fail_share))
        background = [
            (bg, poisson(rng, max(len(times) * self.plan.background, BACKGROUND_MIN)))
            for bg in self.background[svc]
        ]
        wanted = own + sum(n for _, n in background)
        while len(times) < wanted:
            times.append(rng.uniform(start, end))
        times.sort()
        roles: list[str | None] = [None] * len(times)
        picked = rng.sample(range(len(times)), wanted)
        if own:
            role = kind if KIND_SERVICES[kind][0] == svc else "companion"
            for i in picked[:own]:
                roles[i] = role
        pos = own
        for bg, n in background:
            for i in picked[pos : pos + n]:
                roles[i] = bg
            pos += n
        flow = {
            "token": self.token_flow,
            "code": self.code_flow,
            "client": self.client_flow,
            "service": self.service_flow,
            "user": self.user_flow,
            "refresh-token": self.refresh_flow,
            "key": self.key_flow,
        }[svc]
        for t, role in zip(times, roles, strict=True):
            thread, t_start = self.thread_for(svc, t, rng)
            r = Req(self.bufs[svc], rng, t_start, thread, values.b64id())
            flow(r, values, role)
            self.busy[svc][int(thread.rsplit("-", 1)[1])] = r.t

    # ----------------------------------------------------------------- shared pieces

    def preamble(self, r: Req, path: str, auth: str | None, params: list[tuple[str, str]]) -> None:
        """OpenApiHandler path lines plus the validator's debug lines for the parameters."""
        rng = r.rng
        x = rng.random()
        r.t += rng.uniform(0.2, 2.0)
        with_auth = True
        if x < 0.5:
            r.debug(API_PATH, "<init>", f"path = {path}, base path is set to: null", 0.0)
            r.debug(API_PATH, "<init>", f"path ={path}")
            r.debug(API_PATH, "<init>", f"path = {path}, base path is set to: null")
        elif x < 0.9:
            for i in range(3):
                r.debug(API_PATH, "<init>", f"normalised = {path}", 0.0 if i == 0 else None)
            with_auth = rng.random() < 0.2
        else:
            for i in range(3):
                r.debug(
                    API_PATH,
                    "<init>",
                    f"path = {path}, base path is set to: null" if i != 1 else f"path ={path}",
                    0.0 if i == 0 else None,
                )
                r.debug(API_PATH, "<init>", f"normalised = {path}")
        if auth is not None and with_auth:
            r.debug(TYPE_V, "debug", f'validate( "{auth}", "{auth}", authorization)')
        for name, value in params:
            r.debug(TYPE_V, "debug", f'validate( "{value}", "{value}", {name})')

    def validate_body(self, r: Req, body: dict[str, object], fields: list[str]) -> None:
        """json-schema-validator debug lines for a JSON body."""
        text = body_json(body)
        if r.rng.random() < 0.5:
            r.debug(PROPS_V, "debug", f"validate( {text}, {text}, $)")
        for name in fields:
            if name in body:
                node = (
                    body_json(body[name])
                    if not isinstance(body[name], str)
                    else (f'"{body[name]}"')
                )
                logger = ENUM_V if name.endswith(("Type", "Profile")) else TYPE_V
                r.debug(logger, "debug", f"validate( {node}, {text}, $.{name})")

    def light_status(
        self, r: Req, code: str, args: tuple[object, ...], cls: str, method: str = "handleRequest"
    ) -> None:
        """light-4j ``LightHttpHandler.setExchangeStatus`` ERROR line."""
        simple = cls.rsplit(".", 1)[-1]
        msg = (
            f"{status_json(code, *args)} at {cls}.{method}({simple}.java:{java_line(cls, method)})"
        )
        r.log("ERROR", LIGHT, "setExchangeStatus", msg, r.rng.uniform(0.2, 1.5))

    def validator_status(self, r: Req, code: str, *args: object) -> None:
        self.light_status(r, code, args, "com.networknt.openapi.ValidatorHandler")

    def audit(self, r: Req, svc: str, path: str) -> None:
        r.debug(
            AUDIT,
            "saveAudit",
            f"Store audit info:{AUDIT_NAME[svc]}; {self.host}{path}",
            r.rng.uniform(0.3, 2.0),
        )

    def jwt(self, r: Req) -> None:
        x = r.rng.random()
        if x < 0.7:
            r.debug(
                JWT,
                "getPrivateKey",
                "filename = primary.jks key = selfsigned",
                r.rng.uniform(3.0, 8.0),
            )
        if x > 0.45:
            r.info(
                CONFIG,
                "getConfigStream",
                "Config loaded from externalized folder for primary.jks in /config",
                r.rng.uniform(0.5, 7.0),
            )

    def fk_failure(self, r: Req, store: str, key: str, handler: str) -> None:
        """Foreign-key failure of a delete: ERROR on the owner's partition thread, then the
        request's ExceptionHandler logs the propagated RuntimeException."""
        sql = (
            f"java.sql.SQLIntegrityConstraintViolationException: Cannot delete or update a "
            f"parent row: a foreign key constraint fails {FK_TEXT[store]}"
        )
        cls = MAP_STORE[store]
        own = frame(cls, "delete", java_line(cls, "delete"))
        trace = [sql, *JDBC_UPDATE, own, *HZ_DELETE] if r.rng.random() < 0.6 else []
        self.hz(r, store, "delete", key, cont=trace)
        cont = None
        if r.rng.random() < 0.7:
            cont = [
                f"java.lang.RuntimeException: {sql}",
                own,
                *HZ_DELETE,
                *HZ_INVOKE,
                frame(handler, "handleRequest"),
                *CHAIN_TAIL,
                f"Caused by: {sql}",
                *JDBC_UPDATE,
                own,
                f"\t... {len(HZ_DELETE) + len(HZ_INVOKE) + len(CHAIN_TAIL) + 1} common "
                "frames omitted",
            ]
        r.log("ERROR", EXC, "handleRequest", "Exception:", r.rng.uniform(0.3, 2.0), cont)

    # ----------------------------------------------------------------- token service

    def token_exception(
        self, r: Req, methods: list[str], code: str, *args: object, cause: list[str] | None = None
    ) -> None:
        """The token handler's ``ApiException`` ERROR, sometimes with its stack trace."""
        cont = None
        if r.rng.random() < TRACE_P:
            frames = [frame(TOKEN_H, m) for m in [*methods, "handleRequest"]]
            cont = [
                f"com.networknt.exception.ApiException: {status_json(code, *args)}",
                *frames,
                *CHAIN_TAIL,
                *(cause or []),
            ]
        r.log("ERROR", TOKEN_H, "handleRequest", "ApiException", r.rng.uniform(0.3, 3.0), cont)

    def grant_line(self, r: Req, v: Values, grant: str) -> str:
        """The grant's first debug line; returns the handler method name."""
        if grant == "client_credentials":
            scope = "null" if r.rng.random() < 0.85 else "read write"
            r.debug(TOKEN_H, "handleClientCredentials", f"scope = {scope}")
            return "handleClientCredentials"
        if grant == "authorization_code":
            r.debug(
                TOKEN_H, "handleAuthorizationCode", f"code = {v.b64id()} redirectUri = {REDIRECT}"
            )
            return "handleAuthorizationCode"
        if grant == "refresh_token":
            r.debug(
                TOKEN_H,
                "handleRefreshToken",
                f"refreshToken = {r.rng.choice(self.pools.tokens)} scope = null",
            )
            return "handleRefreshToken"
        user = r.rng.choice(self.pools.users).user_id
        r.debug(TOKEN_H, "handlePassword", f"userId = {user} scope = null")
        return "handlePassword"

    def code_map_line(self, r: Req) -> None:
        user = self.pools.users[0] if r.rng.random() < 0.8 else r.rng.choice(self.pools.users)
        roles = "admin user" if user.user_id == "admin" else "user"
        r.debug(
            TOKEN_H,
            "handleAuthorizationCode",
            f"variable from codeMap cache userId = {user.user_id} redirectUri = {REDIRECT} "
            f"scope = null userType = null roles = {roles} remember = null",
            r.rng.uniform(2.0, 7.0),
        )

    def token_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        if role is not None:
            self.token_fail(r, v, role)
            return
        cl = rng.choice(self.pools.clients)
        self.preamble(r, "/oauth2/token", basic(cl.client_id, cl.secret), [])
        ambient = rng.random() < self.plan.ambient_token
        g = rng.random()
        if g < 0.40:
            self.grant_line(r, v, "client_credentials")
            if rng.random() < 0.03:
                self.hz(r, "clients", "load", cl.client_id)
            self.jwt(r)
        elif g < 0.72:
            code = v.b64id()
            r.debug(TOKEN_H, "handleAuthorizationCode", f"code = {code} redirectUri = {REDIRECT}")
            if ambient:  # the load generator replayed an authorization code
                self.token_exception(r, ["handleAuthorizationCode"], "ERR12008", code)
                return
            self.code_map_line(r)
            if rng.random() < 0.1:
                self.hz(r, "users", "load", "admin")
            self.jwt(r)
            self.hz(r, "tokens", "store", v.uuid())
        elif g < 0.92:
            token = rng.choice(self.pools.tokens)
            r.debug(TOKEN_H, "handleRefreshToken", f"refreshToken = {token} scope = null")
            if ambient:  # refresh token already rotated
                self.token_exception(r, ["handleRefreshToken"], "ERR12029", token)
                return
            self.hz(r, "tokens", "delete", token)
            self.jwt(r)
            self.hz(r, "tokens", "store", token)
        elif g < 0.985:
            user = rng.choice(self.pools.users)
            r.debug(TOKEN_H, "handlePassword", f"userId = {user.user_id} scope = null")
            if rng.random() < 0.3:
                self.hz(r, "users", "load", user.user_id)
            self.jwt(r)
            self.hz(r, "tokens", "store", v.uuid())
        else:
            user = rng.choice(self.pools.users)
            r.debug(
                TOKEN_H,
                "handleClientAuthenticatedUser",
                f"client authenticated user grant formMap = {{userType={user.user_type}, "
                f"userId={user.user_id}}}",
            )
            self.jwt(r)
            self.hz(r, "tokens", "store", v.uuid())

    def token_fail(self, r: Req, v: Values, kind: str) -> None:
        rng = r.rng
        cl = rng.choice(self.pools.clients)
        good = basic(cl.client_id, cl.secret)
        grant = rng.choice(
            (
                "client_credentials",
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "password",
            )
        )
        if kind == "access_token_auth_header_error_401":
            raw = base64.b64encode(f"{cl.client_id}:{cl.secret}".encode()).decode()
            auth = rng.choice(
                (
                    f"Bearer {v.b64id()}{v.b64id()}",
                    f"Basic{raw}",
                    f"Digest username={cl.client_id}",
                    f"basic: {raw}",
                    raw,
                )
            )
            self.preamble(r, "/oauth2/token", auth, [])
            m = self.grant_line(r, v, grant)
            self.token_exception(r, ["authenticateClient", m], "ERR12003", auth)
        elif kind == "access_token_authorization_form_401":
            if self.hard and rng.random() < 0.5:
                creds = v.non_ascii()
            else:
                creds = base64.b64encode(rng.choice((cl.client_id, cl.secret)).encode()).decode()
            auth = f"Basic {creds}"
            self.preamble(r, "/oauth2/token", auth, [])
            m = self.grant_line(r, v, grant)
            if rng.random() < 0.4:
                r.log(
                    "WARN",
                    TOKEN_H,
                    "authenticateClient",
                    "Unable to decode the Basic credentials in the Authorization header",
                )
            self.token_exception(r, ["authenticateClient", m], "ERR12004", creds)
        elif kind == "access_token_client_id_not_found_404":
            unknown = v.client_id()
            self.preamble(r, "/oauth2/token", basic(unknown, v.secret()), [])
            m = self.grant_line(r, v, grant)
            self.hz(r, "clients", "load", unknown)
            self.token_exception(
                r, ["validateClientSecret", "authenticateClient", m], "ERR12014", unknown
            )
        elif kind == "access_token_client_secret_wrong_401":
            self.preamble(r, "/oauth2/token", basic(cl.client_id, v.secret()), [])
            m = self.grant_line(r, v, grant)
            r.t += rng.uniform(2.0, 6.0)  # PBKDF2 check of the secret
            self.token_exception(r, ["validateClientSecret", "authenticateClient", m], "ERR12007")
        elif kind == "access_token_form_urlencoded_400":
            self.preamble(r, "/oauth2/token", good, [])
            cause = [
                "Caused by: java.lang.NullPointerException: null",
                frame(TOKEN_H, "handleRequest", 81),
                f"\t... {len(CHAIN_TAIL)} common frames omitted",
            ]
            self.token_exception(r, [], "ERR12000", cause=cause)
        elif kind == "access_token_illegal_grant_type_400":
            bad = rng.choice(
                (
                    "implicit",
                    "client_credential",
                    "token",
                    "authorization-code",
                    "urn:ietf:params:oauth:grant-type:device_code",
                    v.letters(3, 20),
                )
            )
            self.preamble(r, "/oauth2/token", good, [])
            self.token_exception(r, [], "ERR12001", bad)
        elif kind == "access_token_missing_authorization_header_400":
            self.preamble(r, "/oauth2/token", None, [])
            self.validator_status(r, "ERR11017", "authorization", "/oauth2/token")
        else:  # PKCE code_verifier checks in handleAuthorizationCode
            self.preamble(r, "/oauth2/token", good, [])
            self.grant_line(r, v, "authorization_code")
            self.code_map_line(r)
            where = ["handleAuthorizationCode"]
            if kind == "code_verifier_missing_pkce_400":
                self.token_exception(r, where, "ERR12040")
            elif kind == "code_verifier_too_long_pkce_400":
                self.token_exception(r, where, "ERR12039", v.verifier(129, 240))
            elif kind == "code_verifier_too_short_pkce_400":
                self.token_exception(r, where, "ERR12038", v.verifier(1, 42))
            elif kind == "invalid_code_verifier_format_PKCE_400":
                bad = list(v.verifier(43, 128))
                for _ in range(rng.randint(1, 4)):
                    bad[rng.randrange(len(bad))] = rng.choice("+/=!$%&*# ")
                self.token_exception(r, where, "ERR12037", "".join(bad))
            else:
                r.t += rng.uniform(0.5, 2.0)  # SHA-256 of the verifier
                self.token_exception(r, where, "ERR12041")

    # ----------------------------------------------------------------- code service

    def code_params(
        self,
        r: Req,
        v: Values,
        client_id: str | None,
        response_type: str | None,
        pkce: tuple[str, str] | None,
    ) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        if response_type is not None:
            params.append(("response_type", response_type))
        if client_id is not None:
            params.append(("client_id", client_id))
        if r.rng.random() < 0.5:
            params.append(("redirect_uri", REDIRECT))
        if r.rng.random() < 0.4:
            params.append(("state", v.state()))
        if pkce is not None:
            params.append(("code_challenge", pkce[0]))
            params.append(("code_challenge_method", pkce[1]))
        return params

    def code_user(self, r: Req) -> User:
        if self.hard and r.rng.random() < 0.4:
            return r.rng.choice(self.pools.users)
        return self.pools.users[0]

    def code_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        if role is not None and role != "companion":
            self.code_fail(r, v, role)
            return
        cl = rng.choice(self.pools.clients)
        user = self.code_user(r)
        pkce = None
        if role == "companion" or rng.random() < 0.3:
            verifier = v.verifier()
            pkce = (s256(verifier), "S256") if rng.random() < 0.8 else (verifier, "plain")
        code = v.b64id()
        if pkce is not None or rng.random() < 0.6:
            params = self.code_params(r, v, cl.client_id, "code", pkce)
            self.preamble(r, "/oauth2/code", basic(user.user_id, user.password), params)
            r.debug(CODE_GET, "handleRequest", "params")
            if rng.random() < 0.05:
                self.hz(r, "clients", "load", cl.client_id)
            if pkce is not None:
                r.debug(
                    CODE_GET,
                    "handleRequest",
                    f"codeChallenge = {pkce[0]} codeChallengeMethod = {pkce[1]}",
                )
            state = dict(params).get("state")
            uri = f"{REDIRECT}?code={code}" + (f"&state={state}" if state else "")
            r.debug(CODE_GET, "handleRequest", f"redirectUri = {uri}", rng.uniform(0.5, 2.0))
        else:
            self.preamble(r, "/oauth2/code", None, [])
            state = v.state() if rng.random() < 0.5 else None
            remember = rng.choice(("Y", "N", "null"))
            r.debug(
                CODE_GET,
                "handleRequest",
                f"client_id = {cl.client_id} state = {state} "
                f"redirectUri = {REDIRECT} remember = {remember}",
            )
            r.debug(CODE_GET, "handleRequest", f"userId = {user.user_id}", rng.uniform(0.3, 2.0))
            uri = f"{REDIRECT}?code={code}" + (f"&state={state}" if state else "")
            r.debug(CODE_GET, "handleRequest", f"redirectUri = {uri}", rng.uniform(0.5, 2.0))
        self.audit(r, "code", "/oauth2/code")

    def code_fail(self, r: Req, v: Values, kind: str) -> None:
        rng = r.rng
        cl = rng.choice(self.pools.clients)
        user = self.code_user(r)
        auth = basic(user.user_id, user.password)
        path = "/oauth2/code"
        if kind == "authorization_code_client_id_missing_400":
            self.preamble(r, path, auth, self.code_params(r, v, None, "code", None))
            self.validator_status(r, "ERR11000", "client_id", path)
        elif kind == "authorization_code_missing_response_type_400":
            self.preamble(r, path, auth, self.code_params(r, v, cl.client_id, None, None))
            self.validator_status(r, "ERR11000", "response_type", path)
        elif kind == "authorization_code_response_not_code_400":
            bad = rng.choice(("token", "id_token", "code token", "Code", v.letters(1, 12)))
            self.preamble(r, path, auth, self.code_params(r, v, cl.client_id, bad, None))
            self.validator_status(r, "ERR11002", bad, "response_type", "code")
        elif kind == "authorization_code_invalid_client_id_404":
            unknown = v.client_id()
            if rng.random() < 0.6:
                self.preamble(r, path, auth, self.code_params(r, v, unknown, "code", None))
                r.debug(CODE_GET, "handleRequest", "params")
                self.hz(r, "clients", "load", unknown)
                self.light_status(r, "ERR12014", (unknown,), CODE_GET)
            else:
                self.preamble(r, path, None, [])
                r.debug(
                    CODE_GET,
                    "handleRequest",
                    f"client_id = {unknown} state = null redirectUri = {REDIRECT} remember = null",
                )
                self.hz(r, "clients", "load", unknown)
                r.debug(CODE_GET, "handleRequest", f"client is not found for clientId = {unknown}")
                self.light_status(
                    r,
                    "ERR12014",
                    (unknown,),
                    "com.networknt.oauth.code.handler.Oauth2CodePostHandler",
                )
            self.audit(r, "code", path)
        elif kind == "authorization_code_invalid_password_401":
            if self.hard and rng.random() < 0.3:
                auth = f"Basic {v.non_ascii()}"
            else:
                auth = basic(user.user_id, v.password())
            self.preamble(r, path, auth, self.code_params(r, v, cl.client_id, "code", None))
            r.log(
                "WARN",
                CODE_IDM,
                "verify",
                f"Authentication failed for user {user.user_id}",
                rng.uniform(2.0, 9.0),
            )
            r.debug(
                UNDERTOW_SEC,
                "authenticate",
                "Authentication failed with message "
                "Authentication Failed and mechanism BASIC for HttpServerExchange{ GET "
                f"{path}}}",
            )
        else:  # code challenge checks in the code handler
            if kind == "code_challenge_invalid_format_pkce_400":
                chars = list(v.verifier(43, 128))
                for _ in range(rng.randint(1, 4)):
                    chars[rng.randrange(len(chars))] = rng.choice("+/=!$%&*#")
                pkce, code, arg = ("".join(chars), "S256"), "ERR12036", "".join(chars)
            elif kind == "code_challenge_too_long_pkce_400":
                value = v.verifier(129, 260)
                pkce, code, arg = (value, "S256"), "ERR12035", value
            elif kind == "code_challenge_too_short_pkce_400":
                value = v.verifier(1, 42)
                pkce, code, arg = (value, "plain"), "ERR12034", value
            else:
                method = rng.choice(("S512", "s256", "SHA256", "plane", "RS256", v.letters(1, 10)))
                pkce, code, arg = (s256(v.verifier()), method), "ERR12033", method
            self.preamble(r, path, auth, self.code_params(r, v, cl.client_id, "code", pkce))
            r.debug(CODE_GET, "handleRequest", "params")
            self.light_status(r, code, (arg,), CODE_GET)
            self.audit(r, "code", path)

    # ----------------------------------------------------------------- client service

    def client_body(self, v: Values, cl: Client, with_id: bool) -> dict[str, object]:
        body: dict[str, object] = {}
        if with_id:
            body["clientId"] = cl.client_id
        body.update(
            clientType=cl.client_type,
            clientProfile=cl.profile,
            clientName=cl.name,
            clientDesc=f"{cl.name} {v.name()}".strip(),
            scope="read write",
            redirectUri=REDIRECT,
            ownerId=cl.owner,
        )
        return body

    def client_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        H = "com.networknt.oauth.client.handler."
        if role is not None:
            self.client_fail(r, v, role)
            return
        g = rng.random()
        cl = rng.choice(self.pools.clients)
        if g < 0.25:
            new = Client(
                v.client_id(),
                "",
                v.name(),
                rng.choice(CLIENT_TYPES),
                rng.choice(CLIENT_PROFILES),
                rng.choice(self.pools.users).user_id,
            )
            body = self.client_body(v, new, False)
            self.preamble(r, "/oauth2/client", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 4)))
            r.t += rng.uniform(3.0, 9.0)  # hashing the generated secret
            self.hz(r, "clients", "store", new.client_id)
            self.audit(r, "client", "/oauth2/client")
        elif g < 0.45:
            self.preamble(
                r, "/oauth2/client", None, [("page", "1"), ("pageSize", "10")][: rng.randint(1, 2)]
            )
        elif g < 0.70:
            self.preamble(r, f"/oauth2/client/{cl.client_id}", None, [])
            if rng.random() < 0.2:
                self.hz(r, "clients", "load", cl.client_id)
        elif g < 0.85:
            body = self.client_body(v, cl, True)
            self.preamble(r, "/oauth2/client", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 4)))
            if rng.random() < 0.3:
                self.hz(r, "users", "load", cl.owner)
            self.hz(r, "clients", "store", cl.client_id)
        else:
            self.preamble(r, f"/oauth2/client/{cl.client_id}", None, [])
            if rng.random() < self.plan.ambient_fk:
                self.fk_failure(r, "clients", cl.client_id, H + "Oauth2ClientClientIdDeleteHandler")
                return
            self.hz(r, "clients", "delete", cl.client_id)
            self.audit(r, "client", f"/oauth2/client/{cl.client_id}")

    def client_fail(self, r: Req, v: Values, kind: str) -> None:
        rng = r.rng
        H = "com.networknt.oauth.client.handler."
        cl = rng.choice(self.pools.clients)
        if kind.endswith(("clientProfile", "clientType")):
            field_name = "clientProfile" if kind.endswith("clientProfile") else "clientType"
            allowed = CLIENT_PROFILES if field_name == "clientProfile" else CLIENT_TYPES
            bad = rng.choice(("", "WEB", "server", "desktop", "private", v.letters(1, 14)))
            body = self.client_body(v, cl, kind.startswith("update"))
            body[field_name] = bad
            self.preamble(r, "/oauth2/client", None, [])
            self.validate_body(r, body, [f for f in body if f != field_name][: rng.randint(0, 2)])
            r.debug(ENUM_V, "debug", f'validate( "{bad}", {body_json(body)}, $.{field_name})')
            detail = (
                f"$.{field_name}: does not have a value in the enumeration [{', '.join(allowed)}]"
            )
            self.validator_status(r, "ERR11004", detail)
        elif kind == "register_client_404_no_user":
            owner = v.user_id()
            new = Client(
                v.client_id(),
                "",
                v.name(),
                rng.choice(CLIENT_TYPES),
                rng.choice(CLIENT_PROFILES),
                owner,
            )
            body = self.client_body(v, new, False)
            self.preamble(r, "/oauth2/client", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            self.hz(r, "users", "load", owner)
            self.light_status(r, "ERR12013", (owner,), H + "Oauth2ClientPostHandler")
            self.audit(r, "client", "/oauth2/client")
        elif kind in ("update_client_404_clientId", "update_client_404_ownerId"):
            target = cl
            if kind.endswith("clientId"):
                target = Client(v.client_id(), "", cl.name, cl.client_type, cl.profile, cl.owner)
            else:
                target = Client(cl.client_id, "", cl.name, cl.client_type, cl.profile, v.user_id())
            body = self.client_body(v, target, True)
            self.preamble(r, "/oauth2/client", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            if kind.endswith("clientId"):
                self.hz(r, "clients", "load", target.client_id)
                self.light_status(r, "ERR12014", (target.client_id,), H + "Oauth2ClientPutHandler")
            else:
                self.hz(r, "users", "load", target.owner)
                self.light_status(r, "ERR12013", (target.owner,), H + "Oauth2ClientPutHandler")
        elif kind in ("delete_client_404_no_client", "get_client_404_no_client"):
            unknown = v.client_id()
            self.preamble(r, f"/oauth2/client/{unknown}", None, [])
            self.hz(r, "clients", "load", unknown)
            cls = (
                "Oauth2ClientClientIdDeleteHandler"
                if kind.startswith("delete")
                else "Oauth2ClientClientIdGetHandler"
            )
            self.light_status(r, "ERR12014", (unknown,), H + cls)
            if kind.startswith("delete"):
                self.audit(r, "client", f"/oauth2/client/{unknown}")
        else:  # get_client_page_400_no_page
            params = [("pageSize", str(rng.choice((5, 10, 20, 50))))] if rng.random() < 0.5 else []
            self.preamble(r, "/oauth2/client", None, params)
            self.validator_status(r, "ERR11000", "page", "/oauth2/client")

    # ----------------------------------------------------------------- service service

    def service_body(self, v: Values, sv: Service) -> dict[str, object]:
        return {
            "serviceId": sv.service_id,
            "serviceType": sv.service_type,
            "serviceName": sv.name,
            "serviceDesc": f"{sv.name} {v.name()}",
            "scope": "read write",
            "ownerId": sv.owner,
        }

    def service_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        if role is not None:
            self.service_fail(r, v, role)
            return
        g = rng.random()
        sv = rng.choice(self.pools.services)
        if g < 0.25 or 0.70 <= g < 0.85:  # register or update
            if g < 0.25:
                sv = Service(
                    v.service_id(),
                    v.name(),
                    rng.choice(SERVICE_TYPES),
                    rng.choice(self.pools.users).user_id,
                )
            body = self.service_body(v, sv)
            self.preamble(r, "/oauth2/service", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 4)))
            if rng.random() < 0.3:
                self.hz(r, "users", "load", sv.owner)
            self.hz(r, "services", "store", sv.service_id)
            self.audit(r, "service", "/oauth2/service")
        elif g < 0.45:
            self.preamble(
                r, "/oauth2/service", None, [("page", "1"), ("pageSize", "10")][: rng.randint(1, 2)]
            )
        elif g < 0.70:
            self.preamble(r, f"/oauth2/service/{sv.service_id}", None, [])
            if rng.random() < 0.25:
                self.hz(r, "services", "load", sv.service_id)
        else:
            self.preamble(r, f"/oauth2/service/{sv.service_id}", None, [])
            self.hz(r, "services", "delete", sv.service_id)
            self.audit(r, "service", f"/oauth2/service/{sv.service_id}")

    def service_fail(self, r: Req, v: Values, kind: str) -> None:
        rng = r.rng
        H = "com.networknt.oauth.service.handler."
        sv = rng.choice(self.pools.services)
        if kind in ("register_service_400_service_id", "register_service_400_service_type"):
            new = Service(
                v.service_id(),
                v.name(),
                rng.choice(SERVICE_TYPES),
                rng.choice(self.pools.users).user_id,
            )
            body = self.service_body(v, new)
            self.preamble(r, "/oauth2/service", None, [])
            if kind.endswith("service_id"):
                del body["serviceId"]
                self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
                r.debug(REQUIRED_V, "debug", f"validate( {body_json(body)}, {body_json(body)}, $)")
                self.validator_status(r, "ERR11004", "$.serviceId: is missing but it is required")
            else:
                bad = rng.choice(("rest", "soap", "OpenAPI", "", v.letters(1, 12)))
                body["serviceType"] = bad
                self.validate_body(r, body, ["serviceId"][: rng.randint(0, 1)])
                r.debug(ENUM_V, "debug", f'validate( "{bad}", {body_json(body)}, $.serviceType)')
                self.validator_status(
                    r,
                    "ERR11004",
                    "$.serviceType: does not have a value in "
                    f"the enumeration [{', '.join(SERVICE_TYPES)}]",
                )
        elif kind in ("register_service_404_no_user", "update_service_404_user_id"):
            owner = v.user_id()
            target = Service(
                v.service_id() if kind.startswith("register") else sv.service_id,
                sv.name,
                sv.service_type,
                owner,
            )
            body = self.service_body(v, target)
            self.preamble(r, "/oauth2/service", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            self.hz(r, "users", "load", owner)
            cls = (
                "Oauth2ServicePostHandler"
                if kind.startswith("register")
                else "Oauth2ServicePutHandler"
            )
            self.light_status(r, "ERR12013", (owner,), H + cls)
            self.audit(r, "service", "/oauth2/service")
        elif kind == "update_service_404_service_id":
            target = Service(v.service_id(), sv.name, sv.service_type, sv.owner)
            body = self.service_body(v, target)
            self.preamble(r, "/oauth2/service", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            self.hz(r, "services", "load", target.service_id)
            self.light_status(r, "ERR12015", (target.service_id,), H + "Oauth2ServicePutHandler")
        elif kind in ("delete_service_404_no_service", "get_service_404_no_service"):
            unknown = v.service_id()
            self.preamble(r, f"/oauth2/service/{unknown}", None, [])
            self.hz(r, "services", "load", unknown)
            cls = (
                "Oauth2ServiceServiceIdDeleteHandler"
                if kind.startswith("delete")
                else "Oauth2ServiceServiceIdGetHandler"
            )
            self.light_status(r, "ERR12015", (unknown,), H + cls)
        else:  # get_service_page_400_no_page
            params = [("pageSize", "10")] if rng.random() < 0.5 else []
            self.preamble(r, "/oauth2/service", None, params)
            self.validator_status(r, "ERR11000", "page", "/oauth2/service")

    # ----------------------------------------------------------------- user service

    def user_body(self, u: User, password: str | None, confirm: str | None) -> dict[str, object]:
        body: dict[str, object] = {
            "userId": u.user_id,
            "userType": u.user_type,
            "firstName": u.first,
            "lastName": u.last,
            "email": u.email,
        }
        if password is not None:
            body["password"] = password
        if confirm is not None:
            body["passwordConfirm"] = confirm
        return body

    def new_user(self, v: Values) -> User:
        uid = v.user_id()
        first, last = v.person()
        return User(uid, v.email(uid), v.password(), first, last, v.rng.choice(USER_TYPES[1:]))

    def user_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        if role is not None:
            self.user_fail(r, v, role)
            return
        g = rng.random()
        u = rng.choice(self.pools.users[1:])
        if g < 0.25:
            new = self.new_user(v)
            body = self.user_body(new, new.password, new.password)
            self.preamble(r, "/oauth2/user", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 4)))
            r.t += rng.uniform(4.0, 12.0)  # PBKDF2 hash of the password
            self.hz(r, "users", "store", new.user_id)
            self.audit(r, "user", "/oauth2/user")
        elif g < 0.40:
            self.preamble(
                r, "/oauth2/user", None, [("page", "1"), ("pageSize", "10")][: rng.randint(1, 2)]
            )
        elif g < 0.65:
            self.preamble(r, f"/oauth2/user/{u.user_id}", None, [])
            if rng.random() < 0.3:
                self.hz(r, "users", "load", u.user_id)
        elif g < 0.80:
            body = self.user_body(u, None, None)
            self.preamble(r, "/oauth2/user", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            self.hz(r, "users", "store", u.user_id)
        elif g < 0.90:
            new_pw = v.password()
            body = {"password": u.password, "newPassword": new_pw, "newPasswordConfirm": new_pw}
            self.preamble(r, f"/oauth2/password/{u.user_id}", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            if rng.random() < 0.3:
                self.hz(r, "users", "load", u.user_id)
            r.t += rng.uniform(6.0, 16.0)  # validate old, hash new password
            self.hz(r, "users", "store", u.user_id)
        else:
            self.preamble(r, f"/oauth2/user/{u.user_id}", None, [])
            self.hz(r, "users", "delete", u.user_id)
            self.audit(r, "user", f"/oauth2/user/{u.user_id}")

    def user_fail(self, r: Req, v: Values, kind: str) -> None:
        rng = r.rng
        H = "com.networknt.oauth.user.handler."
        u = rng.choice(self.pools.users[1:])
        if kind.startswith("register_user"):
            new = self.new_user(v)
            pw: str | None = new.password
            confirm: str | None = new.password
            if kind.endswith("email_exists"):
                new.email = u.email
            elif kind.endswith("user_exists"):
                new.user_id = u.user_id
            elif kind.endswith("no_password"):
                pw, confirm = rng.choice(((None, None), (None, confirm), ("", ""), (pw, None)))
            else:
                confirm = v.password()
            body = self.user_body(new, pw, confirm)
            self.preamble(r, "/oauth2/user", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 4)))
            cls = H + "Oauth2UserPostHandler"
            if kind.endswith("email_exists"):
                self.light_status(r, "ERR12021", (new.email,), cls)
            elif kind.endswith("user_exists"):
                r.t += rng.uniform(4.0, 12.0)
                self.light_status(r, "ERR12020", (new.user_id,), cls)
            elif kind.endswith("no_password"):
                self.light_status(r, "ERR12011", (pw, confirm), cls)
            else:
                self.light_status(r, "ERR12012", (pw, confirm), cls)
            self.audit(r, "user", "/oauth2/user")
        elif kind.startswith("update_password"):
            target = v.user_id() if kind.endswith("user_not_found") else u.user_id
            new_pw = v.password()
            old = v.password() if kind.endswith("wrong_password") else u.password
            confirm = v.password() if kind.endswith("not_match") else new_pw
            body = {"password": old, "newPassword": new_pw, "newPasswordConfirm": confirm}
            self.preamble(r, f"/oauth2/password/{target}", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            cls = H + "Oauth2PasswordUserIdPostHandler"
            if kind.endswith("user_not_found"):
                self.hz(r, "users", "load", target)
                self.light_status(r, "ERR12013", (target,), cls)
            elif kind.endswith("wrong_password"):
                r.t += rng.uniform(3.0, 8.0)
                self.light_status(r, "ERR12016", (), cls)
            else:
                r.t += rng.uniform(3.0, 8.0)
                self.light_status(r, "ERR12012", (new_pw, confirm), cls)
        elif kind == "update_user_404_no_user":
            ghost = self.new_user(v)
            body = self.user_body(ghost, None, None)
            self.preamble(r, "/oauth2/user", None, [])
            self.validate_body(r, body, rng.sample(list(body), rng.randint(1, 3)))
            self.hz(r, "users", "load", ghost.user_id)
            self.light_status(r, "ERR12013", (ghost.user_id,), H + "Oauth2UserPutHandler")
        elif kind in ("delete_user_404_no_user", "get_user_404_no_user"):
            unknown = v.user_id()
            self.preamble(r, f"/oauth2/user/{unknown}", None, [])
            self.hz(r, "users", "load", unknown)
            cls = (
                "Oauth2UserUserIdDeleteHandler"
                if kind.startswith("delete")
                else "Oauth2UserUserIdGetHandler"
            )
            self.light_status(r, "ERR12013", (unknown,), H + cls)
        else:  # get_user_page_400_no_page
            params = [("pageSize", "10")] if rng.random() < 0.5 else []
            self.preamble(r, "/oauth2/user", None, params)
            self.validator_status(r, "ERR11000", "page", "/oauth2/user")

    # ----------------------------------------------------------------- refresh-token service

    def refresh_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        H = "com.networknt.oauth.token.handler."
        path = "/oauth2/refresh_token"
        if role is not None:
            if role == "get_token_page_400_no_page":
                params = [("pageSize", "10")] if rng.random() < 0.5 else []
                self.preamble(r, path, None, params)
                self.validator_status(r, "ERR11000", "page", path)
                return
            unknown = v.uuid()
            self.preamble(r, f"{path}/{unknown}", None, [])
            self.hz(r, "tokens", "load", unknown)
            cls = (
                "Oauth2RefreshTokenRefreshTokenDeleteHandler"
                if role == "delete_token_404"
                else "Oauth2RefreshTokenRefreshTokenGetHandler"
            )
            self.light_status(r, "ERR12029", (unknown,), H + cls)
            return
        g = rng.random()
        token = rng.choice(self.pools.tokens)
        if g < 0.4:
            page_size = rng.choice((10, 10, 20, 50))
            self.preamble(r, path, None, [("page", "1"), ("pageSize", str(page_size))])
            prefix = "%" if rng.random() < 0.6 else rng.choice(self.pools.users).user_id + "%"
            r.debug(RT_GET, "handleRequest", f"userId = {prefix} page = 0 pageSize = {page_size}")
        elif g < 0.75:
            self.preamble(r, f"{path}/{token}", None, [])
            if rng.random() < 0.3:
                self.hz(r, "tokens", "load", token)
        else:
            self.preamble(r, f"{path}/{token}", None, [])
            self.hz(r, "tokens", "delete", token)
            self.audit(r, "refresh-token", f"{path}/{token}")

    # ----------------------------------------------------------------- key service

    def key_flow(self, r: Req, v: Values, role: str | None) -> None:
        rng = r.rng
        key_id = "100" if rng.random() < 0.75 else "101"
        cl = rng.choice(self.pools.clients)
        auth = basic(cl.client_id, cl.secret)
        self.preamble(r, f"/oauth2/key/{key_id}", auth, [])
        r.debug(KEY_H, "handleRequest", f"keyId = {key_id}")
        r.debug(
            KEY_H, "authenticate", "Found basic auth header %s (decoded using charset %s) in %s"
        )
        if rng.random() < 0.04:
            self.hz(r, "clients", "load", cl.client_id)
        r.t += rng.uniform(2.0, 6.0)
        r.log(
            "DEBUG",
            KEY_H,
            "handleRequest",
            "certificate = -----BEGIN CERTIFICATE-----",
            rng.uniform(0.3, 2.0),
            PEM[key_id],
        )
        self.audit(r, "key", f"/oauth2/key/{key_id}")

    # ----------------------------------------------------------------- start-up

    def startup(self, svc: str) -> None:
        """Container start: config, data source, Hazelcast join, plugins, listener."""
        plan = self.plan
        rng = random.Random(stable_seed(self.seed, plan.index, self.win.test_case, svc, "up"))
        buf = self.bufs[svc]
        ip = plan.ips[svc]
        me = f"[{ip}]:5900 [dev] [{HZ_VERSION}]"
        main = Req(buf, rng, plan.start_at[svc], "main", "")
        main.info(SERVER, "init", "server starts", 0.0)
        for name in CONFIG_FILES:
            if rng.random() < 0.85:
                main.info(
                    CONFIG,
                    "getConfigStream",
                    f"Config loaded from externalized folder for {name} in /config",
                    rng.uniform(1.0, 40.0),
                )
        main.info(
            "com.zaxxer.hikari.HikariDataSource",
            "<init>",
            "HikariPool-1 - Starting...",
            rng.uniform(20.0, 200.0),
        )
        main.info(
            "com.zaxxer.hikari.HikariDataSource",
            "<init>",
            "HikariPool-1 - Start completed.",
            rng.uniform(150.0, 900.0),
        )
        hz_log = "log"
        main.info(
            "com.hazelcast.instance.AddressPicker",
            hz_log,
            f"[LOCAL] [dev] [{HZ_VERSION}] Prefer IPv4 stack is true, prefer IPv6 "
            "addresses is false",
            rng.uniform(20.0, 120.0),
        )
        main.info(
            "com.hazelcast.instance.AddressPicker",
            hz_log,
            f"[LOCAL] [dev] [{HZ_VERSION}] Picked [{ip}]:5900, using socket ServerSocket"
            "[addr=/0.0.0.0,localport=5900], bind any local is true",
            rng.uniform(2, 30),
        )
        main.info(
            "com.hazelcast.system",
            hz_log,
            f"{me} Hazelcast {HZ_VERSION} (20200130 - be02cc5) starting at [{ip}]:5900",
            rng.uniform(5.0, 40.0),
        )
        main.info(
            "com.hazelcast.system",
            hz_log,
            f"{me} Copyright (c) 2008-2020, Hazelcast, Inc. All Rights Reserved.",
        )
        main.log(
            "WARN",
            "com.hazelcast.internal.util.ModularJavaUtils",
            hz_log,
            "Hazelcast is starting in a Java modular environment (Java 9 and newer) but "
            "without proper access to required Java packages. Use additional Java "
            "arguments to provide Hazelcast access to Java internal API. The internal API "
            "access is used to get the best performance results. Arguments to be used:",
            rng.uniform(1.0, 10.0),
            [
                " --add-modules java.se --add-exports java.base/jdk.internal.ref=ALL-UNNAMED "
                "--add-opens java.base/java.lang=ALL-UNNAMED --add-opens java.base/java.nio="
                "ALL-UNNAMED --add-opens java.base/sun.nio.ch=ALL-UNNAMED --add-opens "
                "java.management/sun.management=ALL-UNNAMED"
            ],
        )
        main.info(
            "com.hazelcast.system",
            hz_log,
            f"{me} Configured Hazelcast Serialization version: 1",
            rng.uniform(5, 60),
        )
        main.info(
            "com.hazelcast.spi.impl.operationservice.impl.BackpressureRegulator",
            hz_log,
            f"{me} Backpressure is disabled",
            rng.uniform(20.0, 200.0),
        )
        main.info(
            "com.hazelcast.spi.impl.operationexecutor.impl.OperationExecutorImpl",
            hz_log,
            f"{me} Starting {HZ_PARTITION_THREADS} partition threads and 9 generic threads "
            "(1 dedicated for priority tasks)",
            rng.uniform(5.0, 50.0),
        )
        main.info(
            "com.hazelcast.internal.diagnostics.Diagnostics",
            hz_log,
            f"{me} Diagnostics disabled. To enable add -Dhazelcast.diagnostics.enabled=true "
            "and -Dhazelcast.diagnostics.directory=/tmp to the JVM arguments.",
        )
        main.info(
            "com.hazelcast.instance.Node",
            hz_log,
            f"{me} Creating MulticastJoiner",
            rng.uniform(5.0, 60.0),
        )
        main.info(
            "com.hazelcast.core.LifecycleService",
            hz_log,
            f"{me} [{ip}]:5900 is STARTING",
            rng.uniform(50.0, 300.0),
        )
        order = plan.join_order
        pos = order.index(svc)
        joiner = "com.hazelcast.internal.cluster.impl.MulticastJoiner"
        if pos == 0:
            self.members(main, svc, 1, joiner, hz_log, dt=rng.uniform(2500.0, 3500.0))
        else:
            master = order[0]
            main.info(
                joiner,
                hz_log,
                f"{me} Trying to join to discovered node: [{plan.ips[master]}]:5900",
                rng.uniform(300.0, 1200.0),
            )
            io = Req(buf, rng, main.t, "hz._hzInstance_1_dev.cached.thread-2", "")
            io.info(
                "com.hazelcast.nio.tcp.TcpIpConnector",
                hz_log,
                f"{me} Connecting to /{plan.ips[master]}:5900, timeout: 10000, bind-any: true",
                rng.uniform(1.0, 20.0),
            )
            io.thread = f"hz._hzInstance_1_dev.IO.thread-in-{rng.randint(0, 2)}"
            io.info(
                "com.hazelcast.nio.tcp.TcpIpConnection",
                hz_log,
                f"{me} Initialized new "
                f"cluster connection between /{ip}:{rng.randint(33000, 60999)} and "
                f"/{plan.ips[master]}:5900",
                rng.uniform(5.0, 40.0),
            )
            gen = Req(
                buf,
                rng,
                io.t,
                f"hz._hzInstance_1_dev.generic-operation.thread-{rng.randint(0, 1)}",
                "",
            )
            self.members(
                gen,
                svc,
                pos + 1,
                "com.hazelcast.internal.cluster.ClusterService",
                hz_log,
                dt=rng.uniform(900.0, 1600.0),
            )
            main.t = gen.t
        for later in range(pos + 1, len(order)):  # members joining after this one
            t_join = plan.start_at[order[later]] + rng.uniform(4500.0, 6500.0)
            gen = Req(
                buf, rng, t_join, "hz._hzInstance_1_dev.priority-generic-operation.thread-0", ""
            )
            self.members(
                gen, svc, later + 1, "com.hazelcast.internal.cluster.ClusterService", hz_log
            )
        main.info(
            "com.hazelcast.core.LifecycleService",
            hz_log,
            f"{me} [{ip}]:5900 is STARTED",
            rng.uniform(5.0, 80.0),
        )
        cached = Req(
            buf, rng, main.t, f"hz._hzInstance_1_dev.cached.thread-{rng.randint(1, 5)}", ""
        )
        for store in rng.sample(sorted(MAP_STORE), rng.randint(1, 3)):
            cached.debug(
                MAP_STORE[store], "loadAllKeys", "loadAllKeys is called", rng.uniform(1.0, 40.0)
            )
        for cls in reversed(MIDDLEWARE):
            main.info(SERVER, "middlewareInit", f"Plugin: {cls}", rng.uniform(0.5, 12.0))
        port = HTTPS_PORT[svc]
        # System.out lines of Server.bind() reach the container log without a timestamp.
        main.log(
            "INFO",
            SERVER,
            "bind",
            "Http port disabled.",
            rng.uniform(200.0, 900.0),
            pre=["HOST IP null", "Http port disabled."],
        )
        main.log(
            "INFO",
            SERVER,
            "bind",
            f"Https Server started on ip:0.0.0.0 Port:{port}",
            0.3,
            pre=[f"Https Server started on ip:0.0.0.0 Port:{port}"],
        )

    def members(
        self, r: Req, svc: str, size: int, logger: str, method: str, dt: float | None = None
    ) -> None:
        """Hazelcast's multi-line ``Members {size:N, ver:N} [`` block."""
        plan = self.plan
        me = f"[{plan.ips[svc]}]:5900 [dev] [{HZ_VERSION}]"
        rows = []
        for other in plan.join_order[:size]:
            tail = " this" if other == svc else ""
            rows.append(f"\tMember [{plan.ips[other]}]:5900 - {plan.member_uuid[other]}{tail}")
        cont = ["", f"Members {{size:{size}, ver:{size}}} [", *rows, "]", ""]
        r.log("INFO", logger, method, f"{me} ", dt, cont)


# --------------------------------------------------------------------------- driver


def write_case(root: Path, plan: RunPlan, win: Window, texts: dict[str, str]) -> tuple[int, int]:
    folder = root / f"light-oauth2-data-{plan.epoch}" / win.test_case
    folder.mkdir(parents=True, exist_ok=True)
    lines = size = 0
    for svc, text in texts.items():
        data = (text + "\n").encode("utf-8") if text else b""
        (folder / f"light-oauth2-oauth2-{svc}-1.log").write_bytes(data)
        lines += data.count(b"\n")
        size += len(data)
    return lines, size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (logs/ is created inside)")
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=("standard", "hard"), default="standard")
    parser.add_argument(
        "--rate",
        type=float,
        default=60.0,
        help="mean traffic lines per second of the token service",
    )
    parser.add_argument("--v1", action="store_true", help="LO2 v1 timing (correct first, 60 s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rate <= 0 or args.runs < 0:
        raise SystemExit("alien_synth: --rate must be positive and --runs not negative")
    began = time.perf_counter()
    root = args.out / "logs"
    hard = args.mode == "hard"
    files = lines = size = 0
    for plan in plan_runs(args.seed, args.runs, args.v1):
        _HMS.clear()
        for win in plan.windows:
            texts = CaseGen(plan, win, args.seed, hard, args.rate).run()
            n_lines, n_bytes = write_case(root, plan, win, texts)
            files += len(texts)
            lines += n_lines
            size += n_bytes
    seconds = time.perf_counter() - began
    print(
        f"alien_synth: mode={args.mode}{' v1' if args.v1 else ''} runs={args.runs} "
        f"files={files} lines={lines} MB={size / 1e6:.1f} seconds={seconds:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
