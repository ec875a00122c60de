"""Templating that generalizes: values masked by what they look like (stage 1), template
positions made wildcards by how their values behave across runs (stage 2)."""

from __future__ import annotations

import random
import re
import string

import polars as pl
import pytest

from lo2_dagster.lib import masking
from lo2_dagster.lib import templates as drain
from lo2_dagster_tests.conftest import EXCERPT


def normalize(message: str) -> str:
    return pl.DataFrame({"m_message": [message]}).select(masking.normalized())["m_message"][0]


# --- stage 1: what a value looks like -----------------------------------------------------------

@pytest.mark.parametrize(("message", "expected"), [
    ("task_200811_0001_m_000590_0", "task_<NUM>_<NUM>_m_<NUM>_<NUM>"),  # LogLead's twice
    ("from 10.0.0.12:8443 ok", "from <IP>:<NUM> ok"),
    ("id=ee13b38b-6daa-4d88-9dcb-d62d348c9769.", "id=<UUID>."),
    ("header Bearerd1197aee-0589-4023-945f-f8fdaa09a83a", "header Bearer<UUID>"),
    ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "Authorization: Bearer <CRED>"),
    ("token eyJhbGciOi.eyJzdWIi.c2ln done", "token <JWT> done"),
    ("Load:a64c111c", "Load:<HEX>"),
    ("addr 0x7ffd1234 -5", "addr <HEX> <NUM>"),
    ("first line 42\n\tat second line 43", "first line <NUM>"),
    ("no variables here", "no variables here"),
    # Random ids of any length and alphabet, whole: correlation ids, codes, PKCE strings.
    ("cid km4S3E4zQF-8L-qDNrcTFw and Oauth2TokenPostHandler",
     "cid <ID> and Oauth2TokenPostHandler"),
    ("code = C_6UYSpYYdqgRa_S redirectUri", "code = <ID> redirectUri"),
    ("codeChallenge = abc.X9kL2m~Qz.pq7Vw_eRt-0yU", "codeChallenge = <ID>"),
    ("user kdjfhgqpwoeirutyalsk logged in", "user <ID> logged in"),
    ("name AbCdEfGhIjKlMnOpQrStUv", "name <ID>"),
    # Secrets with symbols, e-mail addresses, whatever follows Basic (mojibake included).
    ("secret aB3$kL9!mN2@ here", "secret <ID> here"),
    ("secret 4jm6L3g!&1N.T#H0Uen here", "secret <ID> here"),  # cut by the id mask: still one
    ("pw !@$^21hJU5FQ and List<T> and /a/<ID>.json", "pw <ID> and List<T> and /a/<ID>.json"),
    ("email yahrOy@example.com exists", "email <ID> exists"),
    ('"email":"f7d4234889@networknt.com"', '"email":"<ID>"'),  # the id masked first
    ('validate( "Basic Ã¤Ã¶Ã¼xyz", authorization)', 'validate( "Basic <CRED>", authorization)'),
    ("BearerX9kLmQ2 rejected", "<ID> rejected"),  # no space: not a scheme, a random word
    ("Bearer realm and Basic auth", "Bearer <CRED> and Basic <CRED>"),
    ("bytes \ufffd\ufffdAb received", "bytes <ID> received"),
    # Query strings split at ? and &; symbols at a word's end or between words are not secrets.
    ("GET /oauth2/authorize?response_type=code&client_id=f7d42348",
     "GET /oauth2/authorize?response_type=code&client_id=<HEX>"),
    ("C++ and a+b and Done! at 100%", "C++ and a+b and Done! at <NUM>%"),
    ("Größe und café", "Größe und café"),
    # A path keeps its constant parts.
    ("path /oauth2/user/Xk9vQ2mLpq", "path /oauth2/user/<ID>"),
])
def test_masks(message, expected):
    assert normalize(message) == expected


#: What a developer wrote: it stays, whatever its length (light-4j's names are long).
CONSTANTS = [
    "UNSUPPORTED_GRANT_TYPE", "VALIDATOR_REQUEST_PARAMETER_QUERY_MISSING", "USER_NOT_FOUND",
    "INVALID_BASIC_CREDENTIALS", "ERR12013", "ERR11000", "UT000128", "S256", "oauth2",
    "Oauth2TokenPostHandler", "c.n.o.t.h.Oauth2TokenPostHandler", "ApiNormalisedPath",
    "SQLIntegrityConstraintViolationException", "EnhancedQueueExecutor$ThreadBody",
    "lambda$handleRequest", "/oauth2/code@get", "/oauth2/refresh_token/{refreshToken}@get",
    "primary.jks", "selfsigned", "clientProfile", "XNIO", "HTTPS", "JwtVerifyHandler",
    "getAPIKey", "IOException", "handleAuthorizationCode", "x509", "networknt", "Hazelcast",
    "XMLHttpRequest", "SqlDDLParser", "JwkHttpClient", "rhythms", "$.email", "$.firstName",
    "HTTPClient", "SSLHandshakeException", "PKCS12", "SHA256withRSA", "AES256",
    "Undertow", "MySQLSyntaxErrorException", "LightHttpHandler", "TLSv1",
]


@pytest.mark.parametrize("word", CONSTANTS)
def test_names_codes_and_paths_stay(word):
    assert normalize(f"seen {word} here") == f"seen {word} here"


@pytest.mark.parametrize(("alphabet", "low", "high", "share"), [
    (string.ascii_letters + string.digits, 12, 40, 0.97),  # base62 ids
    (string.ascii_letters + string.digits + "-_", 12, 48, 0.95),  # base64url
    (string.ascii_letters + string.digits + "!#$%&*+-.?@^_~", 8, 40, 0.97),  # secrets
    (string.ascii_letters, 16, 30, 0.9),  # letters-only random names
])
def test_random_values_of_any_length_are_masked(alphabet, low, high, share):
    """Not one length: most random values of a range of lengths and alphabets are masked by
    stage 1 (what slips through is stage 2's to catch, see below)."""
    rng = random.Random(7)
    values = ["".join(rng.choices(alphabet, k=rng.randint(low, high))) for _ in range(500)]
    masked = sum(normalize(f"value {v} end") != f"value {v} end" for v in values)
    assert masked >= share * len(values)


def test_masking_collapses_the_real_excerpt_to_a_few_dozen_messages():
    excerpt = pl.DataFrame({"m_message": [
        ln.split(" - ", 1)[1] for ln in EXCERPT.read_text().splitlines() if " - " in ln]})
    normalized = excerpt.select(masking.normalized().alias("n"))["n"]
    assert len(excerpt) > 250
    assert normalized.n_unique() <= 30
    text = "\n".join(normalized.unique().to_list())
    # No authorization code, credential, hex id, UUID or number survives.
    for leftover in ("_HiBOjPhQQ6WzaokSGFoZA", "OWYyZWM2YjAt", "8080", "b75d49bc",
                     "29e7c401-a561"):
        assert leftover not in text, leftover
    assert "code = <ID> redirectUri = http://localhost:<NUM>/authorization" in text
    assert 'validate( "Basic <CRED>", "Basic <CRED>", authorization)' in text


# --- stage 2: how values behave across runs -----------------------------------------------------

def train(messages_by_run: dict[str, list[str]], level: str = "WARN",
          logger: str = "c.n.o.t.h.Oauth2TokenPostHandler") -> drain.Templates:
    """Templates trained on already-masked messages, as message counts of each run."""
    parts = {}
    for run, messages in messages_by_run.items():
        frame = pl.DataFrame({"e_message_normalized": messages}).with_columns(
            pl.lit(level).alias("level"), pl.lit(logger).alias("logger"),
            pl.lit("handleRequest").alias("method"))
        parts[run] = (frame.select("e_message_normalized", drain.message_key())
                      .group_by(drain.KEY).len("count")
                      .with_columns(pl.lit("token").alias("service"),
                                    pl.lit(None, pl.Datetime("us")).alias("first_seen"),
                                    pl.col("count").cast(pl.Int64))
                      .select(list(drain.MESSAGE_COUNTS_SCHEMA)))
    return drain.train(drain.merge_counts(parts))


def key(message: str) -> str:
    return f"WARN c.n.o.t.h.Oauth2TokenPostHandler handleRequest - {message}"


def test_a_kind_of_id_the_masks_never_saw_becomes_one_wildcard():
    rng = random.Random(1)
    runs = {f"r{r}": [f"user {''.join(rng.choices('bcdfgaeiou', k=8))} logged in"
                      for _ in range(30)] for r in range(4)}
    templates = train(runs)
    assert len(templates.table) == 1
    assert templates.table["template"][0].endswith("user <*> logged in")
    assert templates.quality.wildcard_positions == 1
    # A value of the same kind the training never saw matches the same template.
    assert templates.match_one(key("user quoraibe logged in")) == templates.table[
        "template_id"][0]


def test_error_names_that_recur_in_every_run_stay_apart():
    names = ["UNSUPPORTED_GRANT_TYPE", "INVALID_BASIC_CREDENTIALS", "USER_NOT_FOUND",
             "CLIENT_NOT_FOUND", "SERVICE_NOT_FOUND", "MISSING_AUTHORIZATION_HEADER",
             "INVALID_AUTHORIZATION_HEADER"]
    runs = {f"r{r}": [f"{name} /oauth2/token@post" for name in names] * 3 for r in range(4)}
    templates = train(runs)
    texts = templates.table["template"].to_list()
    assert len(texts) == len(names)
    assert all(any(name in t for t in texts) for name in names)
    assert templates.quality.widest_kept == len(names)
    # An error name the training never saw is not one of them: it is new.
    assert templates.match_one(key("REFRESH_TOKEN_NOT_FOUND /oauth2/token@post")) \
        == drain.UNMATCHED


def test_values_drawn_from_a_vocabulary_do_not_combine_into_hundreds_of_templates():
    """First and last names recur one by one (a small vocabulary), but each run draws its own
    pairs: the widest position becomes a wildcard until the runs' templates recur, instead of
    one template per pair (90 possible, most of them in one run only)."""
    rng = random.Random(3)
    first = ["Maria", "John", "Ravi", "Lena", "Olga", "Wei", "Tom", "Sara", "Anna", "Steve"]
    last = ["Smith", "Chen", "Garcia", "Kumar", "Brown", "Lee", "Hu", "Novak", "Ivanova"]
    runs = {f"r{r}": [f"user {rng.choice(first)} {rng.choice(last)} type customer registered"
                      for _ in range(40)] for r in range(6)}
    templates = train(runs)
    assert len(templates.table) <= len(last)
    assert all("user <*> " in t for t in templates.table["template"])
    assert templates.quality.seen_once == 0


def test_run_overlap_is_the_pooled_jaccard_index_of_the_runs_value_sets():
    assert drain.run_overlap({"a": {0, 1, 2}, "b": {0, 1, 2}}) == 1.0  # constants
    assert drain.run_overlap({"a": {0}, "b": {1}, "c": {2}}) == 0.0  # ids
    # Two runs: {x, y} and {y, z}: |A & B| = 1, |A | B| = 3.
    assert drain.run_overlap({"x": {0}, "y": {0, 1}, "z": {1}}) == pytest.approx(1 / 3)
    assert drain.run_overlap({"x": {0}}) == 1.0  # one run: nothing to compare


#: light-4j status.yml codes and names, as `LightHttpHandler setExchangeStatus` logs them.
STATUSES = [
    ("ERR12001", 400, "UNSUPPORTED_GRANT_TYPE", "Unsupported grant type {v}."),
    ("ERR12004", 401, "INVALID_BASIC_CREDENTIALS", "Invalid Basic credentials {v}"),
    ("ERR12007", 401, "UNAUTHORIZED_CLIENT", "Unauthorized client with wrong client secret."),
    ("ERR12013", 404, "USER_NOT_FOUND", "User {v} is not found."),
    ("ERR12014", 404, "CLIENT_NOT_FOUND", "Client {v} is not found."),
    ("ERR12015", 404, "SERVICE_NOT_FOUND", "Service {v} is not found."),
    ("ERR12029", 404, "REFRESH_TOKEN_NOT_FOUND", "Refresh token {v} is not found."),
    ("ERR11000", 400, "VALIDATOR_REQUEST_PARAMETER_QUERY_MISSING",
     "Query parameter {v} is required on path /oauth2/client but not found in request."),
    ("ERR12033", 400, "INVALID_CODE_CHALLENGE_METHOD", "Invalid PKCE code challenge method {v}."),
]


def test_the_real_excerpt_with_status_lines_keeps_codes_apart_and_no_value(write_run):
    """The real excerpt in three runs, plus failing requests' status lines with ids, names and
    secrets of varied lengths: every ERR code and error name keeps its own template, and no
    template holds a correlation id, UUID, credential, secret or the like."""
    from lo2_dagster.lib import loader
    from lo2_dagster_tests.conftest import line

    rng = random.Random(5)
    lines = EXCERPT.read_text().splitlines()
    alphabets = (string.ascii_letters + string.digits, string.ascii_letters,
                 string.ascii_letters + string.digits + "!#$%&*+-.?@^_~")
    parts, values = {}, []
    for r in range(3):
        text = list(lines)
        for i in range(40 * len(STATUSES)):
            code, status, name, description = STATUSES[i % len(STATUSES)]
            value = "".join(rng.choices(alphabets[i % 3], k=rng.randint(5, 40)))
            values.append(value)
            cid = "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=22))
            body = (f'{{"statusCode":{status},"code":"{code}","message":"{name}",'
                    f'"description":"{description.format(v=value)}","severity":"ERROR"}}')
            text.append(line("16:31:00.000", f"status = {body}", level="ERROR", cid=cid,
                             logger="c.networknt.handler.LightHttpHandler",
                             method="setExchangeStatus"))
        run = f"light-oauth2-data-17195929{r}6"
        root = write_run({("correct", "token"): "\n".join(text) + "\n"}, run=run)
        parts[run] = drain.message_counts(loader.load_run(root, run, trim_lines=0).events.lazy())
    templates = drain.train(drain.merge_counts(parts))
    texts = templates.table["template"].to_list()
    for code, _, name, _ in STATUSES:  # each code has templates, none shares another's
        mine = [t for t in texts if code in t]
        assert mine and all(name in t for t in mine), (code, mine)
        assert not any(c in t for t in mine for c, _, _, _ in STATUSES if c != code)
    joined = "\n".join(texts)
    cids = set(re.findall(r"\] +(\S{22}) ", EXCERPT.read_text()))
    leaks = [v for v in [*cids, *values] if len(v) >= 8 and v in joined]
    assert not leaks, leaks[:5]
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", joined)  # no UUID
    assert "Basic <CRED>" in joined and "OWYyZWM2" not in joined


def test_a_slot_that_gets_one_off_values_is_a_value_slot_placeholders_included():
    """Seven names come back in every run, in the same slot as thirty ids each run draws once
    and ids stage 1 masked: the slot holds data, so one wildcard takes all of them (the
    position is decided, not each value: the same slot logs ``admin`` and user ids)."""
    rng = random.Random(11)
    names = ["UNSUPPORTED_GRANT_TYPE", "INVALID_BASIC_CREDENTIALS", "USER_NOT_FOUND",
             "CLIENT_NOT_FOUND", "SERVICE_NOT_FOUND", "MISSING_AUTHORIZATION_HEADER",
             "INVALID_AUTHORIZATION_HEADER"]
    runs = {f"r{r}": [f"status {name} raised" for name in names] * 2
            + ["status <ID> raised"] * 5
            + [f"status {''.join(rng.choices('bcdfgaeiou', k=9))} raised" for _ in range(30)]
            for r in range(4)}
    templates = train(runs)
    assert templates.table["template"].to_list() == [key("status <*> raised")]
    # Without the one-off ids, the names and the placeholder keep templates of their own.
    kept = train({r: [m for m in ms if m.split()[1] in {*names, "<ID>"}]
                  for r, ms in runs.items()})
    assert len(kept.table) == len(names) + 1


def test_extra_delimiters_split_tokens_when_mining_and_matching():
    assert drain.tokens("a_b c=d", ("_",)) == ["a", "b", "c=", "d"]
    settings = drain.DrainSettings(extra_delimiters=("_",))
    parts = {}
    for r in range(3):
        frame = pl.DataFrame({drain.KEY: [key(f"grant_{v} done") for v in
                                          ("alpha", "beta", "gamma", "delta", "omega")]})
        parts[f"r{r}"] = frame.with_columns(
            pl.lit("token").alias("service"), pl.lit(1, pl.Int64).alias("count"),
            pl.lit(None, pl.Datetime("us")).alias("first_seen")).select(
            list(drain.MESSAGE_COUNTS_SCHEMA))
    templates = drain.train(drain.merge_counts(parts), settings)
    assert templates.match_one(key("grant_beta done")) != drain.UNMATCHED
    assert all(" grant " in t for t in templates.table["template"])
