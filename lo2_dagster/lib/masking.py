"""Stage 1 of templating: mask what is a value by what it looks like, never by its length.

A log message is a constant shape with values in it. A value is masked when it *looks* like
one, whatever its length or alphabet:

- numbers, hex and colon-hex ids, UUIDs (also glued to a word), IPv4 addresses, JWTs, and
  whatever follows ``Basic `` or ``Bearer `` (a credential: base64, a secret, or bytes that
  were never base64);
- high-entropy words (:func:`looks_random`): letters mixed with digits, except codes
  (``ERR12013``, ``S256``) and identifiers with one number and a word in them
  (``Oauth2TokenPostHandler``); letters in chunks that no word has (vowelless pieces and no
  word among them, five consonants in a row, mixed case every other letter); words with
  symbols such as ``!#%&*+?^~`` between mixed letters and digits (secrets, not ``a+b`` or
  ``C++``); e-mail addresses; and bytes that were never text (the replacement character,
  UTF-8 read as Latin-1). Other non-ASCII words are words.

What stays is what a developer wrote: dictionary-like words, UPPER_SNAKE names (light-4j's
``UNSUPPORTED_GRANT_TYPE``), error codes, Java class and method names, URL paths, file names.
Whatever a value looks like and still gets through, stage 2 catches by how it behaves across
the training runs (:mod:`lo2_dagster.lib.templates`): one-off values, and positions whose runs
each draw their own values, become wildcards.

The regular expressions run first, vectorized, over every distinct line (ids make most lines
distinct); the word classifier, in Python, runs only over the few distinct shapes left.

What is masked is an event's *feature text* (:func:`feature_text`): the first line of its
message, cut to its first :data:`MAX_FEATURE_CHARS` characters. Every per-message feature (the
normalized message, words, trigrams, the message key Drain mines and matches) comes from it, so
the work per message is bounded however long a line is; ``m_message`` keeps the whole line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import polars as pl

_NOT_ALNUM = r"[^A-Za-z0-9]"
#: Characters of a random token (base64url plus PKCE's unreserved ``.`` and ``~``).
_TOKEN = r"[A-Za-z0-9._~-]"
_NOT_TOKEN = r"[^A-Za-z0-9._~-]"


def _bounded(pattern: str, edge: str = _NOT_ALNUM) -> str:
    """``pattern`` as a whole token: preceded and followed by ``edge`` or the text's ends (the
    regex engine has no look-around, so the edges are captured and put back)."""
    return f"(?P<start>{edge}|^)(?:{pattern})(?P<end>{edge}|$)"


#: Values recognized by their form, applied first: (replacement, pattern) as in LogLead.
VALUE_MASKS: tuple[tuple[str, str], ...] = (
    # A UUID's shape is its own boundary on the left: glued to a word (``Bearer<uuid>``), it
    # is still one.
    ("<UUID>${end}",
     r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
     r"(?P<end>[^A-Za-z0-9]|$)"),
    # Whatever follows the scheme and a space, up to a space, quote or comma, is the
    # credential: base64, a raw secret with symbols, or mojibake.
    ("${start}${scheme} <CRED>",
     r"(?P<start>[^A-Za-z0-9]|^)(?P<scheme>Basic|Bearer)[ \t]+[^\s\"',;]+"),
    ("${start}<JWT>${end}", _bounded(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")),
    ("${start}<IP>${end}", _bounded(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")),
    ("${start}<HEX>${end}", _bounded(r"0x[a-f0-9A-F]+|[0-9a-fA-F]{8,}")),
    # Two separate digit runs with letters between them: no identifier looks like that, every
    # random id of some length does (the classifier agrees; this is the fast path). The whole
    # run of base64url and PKCE characters (letters, digits, ``-._~``) becomes one placeholder.
    ("${start}<ID>${end}", _bounded(rf"{_TOKEN}*[0-9][A-Za-z]+[0-9]{_TOKEN}*", edge=_NOT_TOKEN)),
)

#: LogLead's ``masking_patterns_drain`` (loglead/enhancers/eventlog.py), unchanged except that
#: its IP mask moved into :data:`VALUE_MASKS` (before the id masks, which would split it).
LOGLEAD_MASKS: tuple[tuple[str, str], ...] = (
    ("${start}<ID>${end}", _bounded(r"([0-9a-f]{2,}:){3,}([0-9a-f]{2,})")),
    ("${start}<SEQ>${end}", _bounded(r"([0-9a-f]{6,} ?){3,}")),
    ("${start}<SEQ>${end}", _bounded(r"([0-9A-F]{4} ?){4,}")),
    ("${start}<HEX>${end}", _bounded(r"0x[a-f0-9A-F]+")),
    ("${start}<NUM>${end}", _bounded(r"[\-\+]?\d+")),
    ("${cmd}<CMD>", r"(?P<cmd>executed cmd )(\".+?\")"),
)

MASKS: tuple[tuple[str, str], ...] = VALUE_MASKS + LOGLEAD_MASKS

#: Placeholder of a value recognized by the word classifier.
VALUE = "<ID>"


#: The features of a message are computed on at most this many characters of its first line
#: (:func:`feature_text`). The limit bounds the work and the output per message; it is not a
#: guess at what a normal line is. Each character costs up to three trigrams (masks lengthen a
#: text: ``1 1 1`` becomes ``<NUM> <NUM> <NUM>``) and half a word, and the lists are stored per
#: event, in ``lo2/events_enhanced`` and again in ``lo2/sequences_enhanced``. At 64 Ki
#: characters the worst case (``1 1 1 ...``) is 196,606 trigrams and 32,768 words per event,
#: ~20 ms and a few MB of lists; a 10 MB line whole would be 10 M trigrams per event. And the
#: limit is ~200 times the longest line of the real LO2 excerpt in the tests (306 characters):
#: it cuts dumps, not log lines. What was cut is counted (:func:`cut_for_features`) in the
#: metadata of ``lo2/message_counts`` and ``lo2/events_enhanced``, with a warning.
MAX_FEATURE_CHARS = 65_536


def first_line(message: str | pl.Expr = "m_message") -> pl.Expr:
    """The first line of a (possibly multi-line) message: what LogLead masks and Drain parses."""
    expr = pl.col(message) if isinstance(message, str) else message
    return expr.str.split("\n").list.first()


def feature_text(message: str | pl.Expr = "m_message") -> pl.Expr:
    """What every per-message feature is computed on: the first line of the message, cut to its
    first :data:`MAX_FEATURE_CHARS` characters (a prefix; the rest of an over-long line does not
    count, a value cut in two is masked as what its first part looks like)."""
    return first_line(message).str.slice(0, MAX_FEATURE_CHARS)


def cut_for_features(frame: pl.DataFrame, message: str = "m_message") -> pl.DataFrame:
    """The rows of ``frame`` whose first line of ``message`` is longer than
    :data:`MAX_FEATURE_CHARS` (their features are computed on a prefix), with its length in
    characters as ``first_line_chars``. Cheap: only texts of more bytes than that are split."""
    return (frame.filter(pl.col(message).str.len_bytes() > MAX_FEATURE_CHARS)
            .with_columns(first_line(message).str.len_chars().alias("first_line_chars"))
            .filter(pl.col("first_line_chars") > MAX_FEATURE_CHARS))


def masked(text: pl.Expr, masks: Sequence[tuple[str, str]] = MASKS) -> pl.Expr:
    """``text`` with the regular-expression masks applied.

    Each mask runs twice, as in LogLead: a match consumes the separator after it, so ``1_2_3``
    needs a second pass to mask every number.
    """
    for replacement, pattern in masks:
        text = text.str.replace_all(pattern, replacement).str.replace_all(pattern, replacement)
    return text


# --------------------------------------------------------------------------- the classifier

#: A word: a run of anything but whitespace and the punctuation that structures a message
#: (quotes, separators, brackets, and a query string's ``?`` or ``&`` before ``name=``).
#: ``.``, ``/``, ``_``, ``-``, ``$`` and ``@`` stay inside words: Java names, URL paths,
#: snake_case, ids, e-mail addresses; so do ``?`` and ``&`` elsewhere (secrets have them),
#: and the placeholders of the value masks (a secret they cut into pieces is still one word).
_WORD = re.compile(
    r"(?:<[A-Z]+>|[^\s\"'`,:;=(){}\[\]<>|?&]|[?&](?![A-Za-z_][\w.-]*=))+")
_PLACEHOLDER = re.compile(r"(<[A-Z]+>)")
_ADJACENT = re.compile(r"(?:<[A-Z]+>){2,}")
#: What is left of a secret around the placeholders of its pieces.
_SECRET_REST = re.compile(r"[!#%&*+?^~\\$]")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
#: A "unit": a maximal run of the characters of base64url and of identifiers.
_UNIT_RUN = re.compile(r"[A-Za-z0-9_-]+")
#: Symbols that appear in secrets and passwords, not in names (``$`` only Java-style), between
#: two letters or digits (``C++``, ``Done!`` and ``100%`` end with theirs).
_SECRET_SYMBOL = re.compile(
    r"[A-Za-z0-9][!#%&*+?^~\\$@.-]*[!#%&*+?^~\\][!#%&*+?^~\\$@.-]*[A-Za-z0-9]")
_JAVA_DOLLAR = re.compile(r"[A-Za-z_][\w.]*(\$[\w]+)+")
#: An e-mail address (``@`` alone also joins light-4j's audit endpoints: ``/oauth2/code@get``).
_EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
#: Camel-case chunks: ``ApiNormalisedPath`` -> Api, Normalised, Path; ``IOException`` -> IO,
#: Exception; digits are chunks of their own.
_CHUNK = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: An identifier that carries one number: ``ERR12013``, ``UT000128``, ``S256``, ``x509``.
_CODE = re.compile(r"[A-Za-z]{1,8}[0-9]+")
_VOWELS = frozenset("aeiouyAEIOUY")
_CONSONANT_RUN = re.compile(r"[b-df-hj-np-tv-xzB-DF-HJ-NP-TV-XZ]{5,}")
#: What bytes that were never text look like once decoded: the replacement character, C1
#: controls, UTF-8 read as Latin-1 (``Ã¤``).
_MOJIBAKE = re.compile("[\ufffd\x80-\x9f]|[\u00c2\u00c3][\u0080-\u00bf]")


def _unpronounceable(chunk: str) -> bool:
    """A chunk of letters no word has: five consonants in a row. Short all-capital chunks are
    acronyms (``HTTPS``). ``lengths`` and ``strengths`` are masked too: a constant masked the
    same way every time costs a template's word, a random value kept costs a template per
    value."""
    return not (chunk.isupper() and len(chunk) <= 6) and bool(_CONSONANT_RUN.search(chunk))


def _alnum_is_random(text: str) -> bool:
    """Whether a run of letters and digits looks generated rather than written."""
    if text.isdigit() or len(text) < 3 or _CODE.fullmatch(text):
        return False  # numbers are LogLead's <NUM>; two characters tell nothing; codes
    chunks = _CHUNK.findall(text)
    letters = [c for c in chunks if c.isalpha()]
    digit_runs = len(chunks) - len(letters)
    if any(_unpronounceable(c) for c in letters):
        return True
    vowelless = sum(1 for c in letters if len(c) >= 2 and not _VOWELS.intersection(c))
    word = any(len(c) >= 3 and _VOWELS.intersection(c) for c in letters)
    if vowelless >= 3 or (vowelless >= 2 and not word):
        return True  # vowelless pieces (Pd, Sp, TS) and no word (XMLHttpRequest has one)
    mixed_case = any(c.isupper() for c in text) and any(c.islower() for c in text)
    n_letters = sum(len(c) for c in letters)
    if mixed_case and n_letters >= 8 and n_letters / max(1, len(letters)) < 3:
        return True  # case flips every other letter: aBcDeFgH
    if digit_runs >= 2:
        return True
    if digit_runs == 1 and not text[0].isdigit():
        # One number inside an identifier with a word in it (Oauth2TokenPostHandler, log4j;
        # not smgTB2a).
        return not word
    return digit_runs == 1 and len(letters) > 0 and n_letters >= 3


def _character_classes(text: str) -> int:
    return sum((any(c.islower() for c in text), any(c.isupper() for c in text),
                any(c.isdigit() for c in text)))


def looks_random(word: str) -> bool:
    """Whether a whole word is a value (see the module docstring)."""
    if _EMAIL.fullmatch(word) or _MOJIBAKE.search(word):
        return True
    if _SECRET_SYMBOL.search(word) and not _JAVA_DOLLAR.fullmatch(word):
        # A symbol inside a word of mixed characters: a secret (``aB3$kL9!``), not ``a+b``.
        alnum = "".join(_ALNUM_RUN.findall(word))
        return _character_classes(alnum) >= 2 or any(
            _alnum_is_random(run) for run in _ALNUM_RUN.findall(word))
    return False


def _unit_is_random(unit: str) -> bool:
    """A unit (letters, digits, ``_``, ``-``) is random if any of its parts is: the parts of
    a base64url id are random, those of UPPER_SNAKE and kebab-case names are words."""
    return any(_alnum_is_random(part) for part in re.split(r"[_-]+", unit) if part)


@functools.lru_cache(maxsize=65_536)
def mask_word(word: str) -> str:
    """``word`` with its random units replaced by :data:`VALUE`. Units are separated by ``.``,
    ``/``, ``$``, ``@``, ``~`` (Java names, URL paths), so ``/oauth2/user/Xk9vQ2mL`` keeps its
    path; a secret-like word, or one whose letters and digits are mostly in random units (a
    token with dots in it), becomes one placeholder. Around placeholders, the pieces between
    them are classified; placeholders next to each other or to a secret's symbols are one
    value."""
    if _EMAIL.fullmatch(word):
        return VALUE  # also <ID>@networknt.com
    if _PLACEHOLDER.search(word):
        pieces = _PLACEHOLDER.split(word)
        rest = "".join(pieces[0::2])
        if not rest:
            return word if len(pieces) == 3 else VALUE
        if _SECRET_REST.search(rest):
            return VALUE
        masked = "".join(mask_word(p) if i % 2 == 0 and p else p
                         for i, p in enumerate(pieces))
        return _ADJACENT.sub(VALUE, masked)  # <ID><HEX>: one value
    if looks_random(word):
        return VALUE
    units = _UNIT_RUN.findall(word)
    random_chars = sum(len(u) for u in units if _unit_is_random(u))
    if not random_chars:
        return word
    if 2 * random_chars > sum(len(u) for u in units):
        return VALUE
    return _UNIT_RUN.sub(lambda m: VALUE if _unit_is_random(m.group()) else m.group(), word)


def mask_words(text: str) -> str:
    """Every word of ``text`` through :func:`mask_word`; placeholders (``<...>``) and the
    punctuation between words are kept."""
    return _WORD.sub(lambda m: mask_word(m.group()), text)


#: Texts :func:`classified` masked lately (shapes: what is left after the value masks), at most
#: :data:`_SHAPES_KEPT`: a run's message counts and its enhanced events mask the same few
#: thousand shapes, one after the other in one process (``lo2-dagster run``).
_SHAPES: dict[str, str] = {}
_SHAPES_KEPT = 100_000


def classified(texts: pl.Series) -> pl.Series:
    """:func:`mask_words` of each text, computed once per distinct text (and remembered for
    the next call, up to :data:`_SHAPES_KEPT` texts)."""
    distinct = texts.unique()
    masked = []
    for text in distinct.to_list():
        if text is None:
            masked.append(None)
            continue
        value = _SHAPES.get(text)
        if value is None:
            if len(_SHAPES) >= _SHAPES_KEPT:
                _SHAPES.clear()
            value = _SHAPES[text] = mask_words(text)
        masked.append(value)
    mapping = pl.DataFrame({"_text": distinct, "_masked": masked},
                           schema={"_text": pl.String, "_masked": pl.String})
    return (pl.DataFrame({"_text": texts}).join(mapping, on="_text", how="left",
                                                 maintain_order="left", nulls_equal=True)
            .get_column("_masked").alias(texts.name))


def normalized(message: str | pl.Expr = "m_message") -> pl.Expr:
    """``e_message_normalized``: the feature text of the message (its first line, cut to
    :data:`MAX_FEATURE_CHARS`), masked: the value masks, the word classifier (before LogLead's
    number mask, which would cut ``2_vPlCHW...`` in two), then LogLead's masks."""
    values = masked(feature_text(message), VALUE_MASKS)
    return masked(values.map_batches(classified, return_dtype=pl.String), LOGLEAD_MASKS)


def normalize_lines(lines: pl.Series) -> pl.DataFrame:
    """``line`` -> ``e_message_normalized`` for each distinct feature text in ``lines`` (first
    lines cut to :data:`MAX_FEATURE_CHARS`: :func:`feature_text`).

    The value masks run on the distinct lines, the word classifier and LogLead's masks on what
    is distinct after them: ids make most lines unique, so a run's ~300,000 distinct lines
    become a few thousand shapes, and the rest costs next to nothing. Same result as
    :func:`normalized`.
    """
    # The streaming engine spreads the regex passes over all cores (the in-memory one uses one).
    frame = (
        pl.DataFrame({"line": lines.unique()}).lazy()
        .with_columns(masked(pl.col("line"), VALUE_MASKS).alias("_values_masked"))
        .collect(engine="streaming")
    )
    shapes = frame.select(pl.col("_values_masked").unique())
    shapes = shapes.with_columns(
        masked(pl.lit(classified(shapes["_values_masked"])), LOGLEAD_MASKS)
        .alias("e_message_normalized"))
    return frame.join(shapes, on="_values_masked", how="left").select(
        "line", "e_message_normalized")


def with_normalized(frame: pl.DataFrame, message: str = "m_message") -> pl.DataFrame:
    """``frame`` plus ``e_message_normalized``, masking each distinct feature text once (LO2
    repeats its lines: a run's 1.3 M events have about a quarter as many distinct first lines,
    and the regex passes are the expensive part)."""
    frame = frame.with_columns(feature_text(message).alias("_feature_text"))
    lines = normalize_lines(frame["_feature_text"]).rename({"line": "_feature_text"})
    return frame.join(lines, on="_feature_text", how="left", maintain_order="left").drop(
        "_feature_text")
