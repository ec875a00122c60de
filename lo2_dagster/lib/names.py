"""Names fixed by the LO2 dataset: test cases, services, file and run names (see FORMAT.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

CORRECT = "correct"

#: The 53 error test cases of LO2, exactly as their folders are named.
ERROR_TEST_CASES: tuple[str, ...] = (
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

#: All 54 test cases: ``correct`` first, then the error cases.
TEST_CASES: tuple[str, ...] = (CORRECT, *ERROR_TEST_CASES)

#: The 7 Light-OAuth2 services (short names, as in ``seq_id`` and the ``service`` column).
SERVICES: tuple[str, ...] = ("client", "code", "key", "refresh-token", "service", "token", "user")

RUN_PREFIX = "light-oauth2-data-"
#: LO2 v2's run folders: ``oauth2_logs_LO2_run_<epoch>``.
RUN_PREFIX_V2 = "oauth2_logs_LO2_run_"
RUN_PREFIXES = (RUN_PREFIX, RUN_PREFIX_V2)
#: The start time a run folder's name carries: LO2 v1 and v2 names, and any other name that
#: ends in ``-`` or ``_`` and 10 digits (epoch seconds, 2001-2286), e.g. a renamed copy.
_RUN_NAME = re.compile(r"^(?:light-oauth2-data-(\d+)|oauth2_logs_LO2_run_(\d+)|.*[-_](\d{10}))$")
_SERVICE_FILE = re.compile(r"^light-oauth2-oauth2-(.+)-1\.log$")
_FORBIDDEN_IN_KEY = ("/", "\\", ",", "\n", "\r", "\t")


def service_file_name(service: str) -> str:
    """File name of a service's container log, e.g. ``light-oauth2-oauth2-token-1.log``."""
    return f"light-oauth2-oauth2-{service}-1.log"


def service_of_file(file_name: str) -> str | None:
    """The short service name of a container log file name, or None if it is not one of the 7."""
    m = _SERVICE_FILE.match(file_name)
    return m.group(1) if m and m.group(1) in SERVICES else None


def run_name(epoch: int, layout: str = "v1") -> str:
    """Folder name of a run that started at ``epoch`` (seconds, UTC), as LO2 ``v1`` or ``v2``
    names it."""
    return f"{RUN_PREFIX_V2 if layout == 'v2' else RUN_PREFIX}{epoch}"


def run_epoch(run: str) -> int | None:
    """Start time (epoch seconds) encoded in a run folder name (v1, v2 or a trailing epoch),
    or None if it has none."""
    m = _RUN_NAME.match(run)
    digits = next((g for g in m.groups() if g), None) if m else None
    return int(digits) if digits else None


def run_start(run: str) -> datetime | None:
    """Start of a run as a naive UTC datetime (LO2 log times are UTC and carry no date), or
    None if the name carries no usable epoch (none, or one out of range such as milliseconds)."""
    epoch = run_epoch(run)
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def seq_id(run: str, test_case: str, service: str) -> str:
    """Sequence id of one log file: ``<run>__<test_case>__<service>``."""
    return f"{run}__{test_case}__{service}"


class InvalidRunKey(ValueError):
    """A partition key that cannot name a run folder."""


def validate_run_key(key: str) -> str:
    """Return ``key`` if it can safely name a run folder and a Parquet file, else raise.

    Keys become path segments in the warehouse and are joined with commas in Dagster's
    CLI, so separators, commas, ``..`` and blank keys are refused.
    """
    problems = []
    if not key or not key.strip():
        problems.append("it is empty")
    if key != key.strip():
        problems.append("it has leading or trailing whitespace")
    if any(c in key for c in _FORBIDDEN_IN_KEY):
        problems.append("it contains a path separator, comma, tab or newline")
    if ".." in key:
        problems.append("it contains '..'")
    if key.startswith("."):
        problems.append("it starts with '.' (hidden folder)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        problems.append("its name is not valid UTF-8")
    if problems:
        raise InvalidRunKey(
            f"Invalid run partition key {key!r}: {'; '.join(problems)}. A run key is the name of "
            f"one run folder, e.g. '{RUN_PREFIX}1719592986'; rename the folder or delete the "
            "partition in the Dagster UI (Assets > lo2/raw_events > Partitions)."
        )
    return key
