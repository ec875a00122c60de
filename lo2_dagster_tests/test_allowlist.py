"""The FP allowlist file: its format, its errors (naming the file and the fix), the shipped one."""

from pathlib import Path

import polars as pl
import pytest

from lo2_dagster import settings
from lo2_dagster.lib.allowlist import AllowlistError, load_allowlist


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fp_allowlist.toml"
    path.write_text(text)
    return path


def test_the_shipped_file_is_valid_and_documents_its_format():
    path = settings.fp_allowlist()
    assert path == settings.REPO_ROOT / "data" / "fp_allowlist.toml"
    allowlist = load_allowlist(path)
    assert allowlist.events and allowlist.source == str(path)
    text = path.read_text()
    for word in ("[[event]]", "[[sequence]]", "message", "template", "service", "seq_id"):
        assert word in text


def test_rules_and_their_expressions(tmp_path):
    path = write(tmp_path, """
[[event]]
name = "cfg"
message = '^Config loaded'
service = "token"
reason = "benign"

[[event]]
name = "tpl"
template = "e3"

[[sequence]]
name = "key"
seq_id = '__key$'
""")
    allowlist = load_allowlist(path)
    events = pl.DataFrame({
        "m_message": ["Config loaded x", "Config loaded y", "other", "other"],
        "service": ["token", "code", "token", "user"],
        "e_event_drain_id": ["e1", "e1", "e3", "e4"],
    })
    flags = events.select(allowlist.event_flags())
    assert flags["fp_rule/cfg"].to_list() == [True, False, False, False]
    assert flags["fp_rule/tpl"].to_list() == [False, False, True, False]
    seqs = pl.DataFrame({"seq_id": ["r__correct__key", "r__correct__token"]})
    assert seqs.select(allowlist.sequence_flags())["fp_rule/key"].to_list() == [True, False]
    assert allowlist.rules_table()["name"].to_list() == ["cfg", "tpl", "key"]


def test_digest_follows_the_rules_not_the_comments(tmp_path):
    path = write(tmp_path, '[[event]]\nname = "a"\nmessage = "x"\n')
    first = load_allowlist(path).digest
    assert load_allowlist(path).digest == first
    path.write_text('# why\n[[event]]\nname = "a"\nmessage = "x"\nreason = "because"\n')
    assert load_allowlist(path).digest == first
    path.write_text('[[event]]\nname = "a"\nmessage = "y"\n')
    assert load_allowlist(path).digest != first
    assert load_allowlist(tmp_path / "absent.toml").digest != first


def test_a_missing_file_is_an_empty_allowlist(tmp_path):
    allowlist = load_allowlist(tmp_path / "absent.toml")
    assert not allowlist.events and not allowlist.sequences


@pytest.mark.parametrize(("text", "says"), [
    ("[[event]\nname = 1", "not valid TOML"),
    ('[[rule]]\nname = "a"', "unknown section"),
    ('[[event]]\nmessage = "x"', "needs a name"),
    ('[[event]]\nname = "a"', "needs a message regex and/or a template id"),
    ('[[event]]\nname = "a"\nmessage = "(unclosed"', "invalid regex"),
    ('[[event]]\nname = "a"\nmessage = "x"\nservice = "oauth"', "unknown service 'oauth'"),
    ('[[event]]\nname = "a"\nmessage = "x"\ncolour = "red"', "unknown key(s) ['colour']"),
    ('[[event]]\nname = "a"\nmessage = 3', "must be a string"),
    ('[[event]]\nname = "a"\nmessage = "x"\n[[sequence]]\nname = "a"\nseq_id = "y"',
     "repeated: ['a']"),
    ('[[sequence]]\nname = "s"', "needs a name and a seq_id regex"),
    ("event = 3", "write each rule as a [[event]] block"),
    ('[event]\nname = "a"\nmessage = "x"', "write each rule as a [[event]] block"),
    ('[[event]]\nname = "a"\nmessage = ""', "an empty pattern matches everything"),
    ('[[sequence]]\nname = "a"\nseq_id = ""', "an empty pattern matches everything"),
    ('[[event]]\nname = "a"\ntemplate = "12"', "not a Drain template id"),
])
def test_errors_name_the_file_and_the_problem(tmp_path, text, says):
    path = write(tmp_path, text)
    with pytest.raises(AllowlistError) as error:
        load_allowlist(path)
    assert str(path) in str(error.value) and says in str(error.value)
