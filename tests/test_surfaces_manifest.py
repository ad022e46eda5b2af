"""The boot manifest surface: entries once each, in migration order, comments kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lanes import scaffold
from lanes.surfaces import manifest

SEED = scaffold.MANIFEST_TEXT.format(entries="\n".join(scaffold.REQUIRED))


def test_entries_go_in_migration_order_and_comments_stay() -> None:
    out = manifest.add_entries(SEED, ["261_legal_chain_v2.sql", "100_mid.sql"])
    lines = out.splitlines()
    assert lines[:3] == SEED.splitlines()[:3]  # the header comments, untouched
    assert manifest.entries(out) == [
        "049_provenance_strengthen.sql",
        "075_am_amendment_diff.sql",
        "090_law_article_body_en.sql",
        "100_mid.sql",
        "115_source_manifest_view.sql",
        "121_jpi_programs_subsidy_rate_text_column.sql",
        "261_legal_chain_v2.sql",
    ]


def test_numeric_order_not_text_order() -> None:
    text = "# m\n9_a.sql\n10_b.sql\n"
    assert manifest.entries(manifest.add_entries(text, ["95_c.sql"])) == [
        "9_a.sql",
        "10_b.sql",
        "95_c.sql",
    ]


def test_entry_already_present_is_not_added_again() -> None:
    assert manifest.add_entries(SEED, [scaffold.REQUIRED[2]]) == SEED


def test_comment_between_entries_and_inline_comment_kept() -> None:
    text = "# head\n049_a.sql  # first\n\n# later ones\n200_b.sql\n"
    out = manifest.add_entries(text, ["100_c.sql", "300_d.sql"])
    assert out == "# head\n049_a.sql  # first\n100_c.sql\n\n# later ones\n200_b.sql\n300_d.sql\n"


def test_file_without_final_newline_and_empty_file() -> None:
    assert manifest.add_entries("# m\n049_a.sql", ["050_b.sql"]) == "# m\n049_a.sql\n050_b.sql\n"
    assert manifest.add_entries("", ["050_b.sql"]) == "050_b.sql\n"
    assert manifest.add_entries("# only a comment\n", ["1_a.sql"]) == "# only a comment\n1_a.sql\n"


def test_crlf_file_stays_crlf() -> None:
    out = manifest.add_entries("# m\r\n049_a.sql\r\n", ["050_b.sql"])
    assert out == "# m\r\n049_a.sql\r\n050_b.sql\r\n"


_entry = st.from_regex(r"[0-9]{1,3}_[a-z]{1,6}\.sql|[a-z]{1,6}\.sql", fullmatch=True)
_comment = st.from_regex(r"# [a-z ]{0,20}", fullmatch=True)


@st.composite
def _manifests(draw: st.DrawFn) -> str:
    entries = sorted(set(draw(st.lists(_entry, max_size=8))), key=manifest.order_key)
    lines: list[str] = []
    for entry in entries:
        lines += draw(st.lists(_comment | st.just(""), max_size=2))
        lines.append(entry)
    return "".join(line + "\n" for line in [*draw(st.lists(_comment, max_size=2)), *lines])


@settings(max_examples=50, deadline=None)
@given(text=_manifests(), new=st.lists(_entry, max_size=6), data=st.data())
def test_application_is_deterministic_idempotent_and_order_free(
    text: str, new: list[str], data: st.DataObject
) -> None:
    once = manifest.add_entries(text, new)
    assert manifest.add_entries(text, list(new)) == once  # deterministic
    assert manifest.add_entries(once, new) == once  # applying twice changes nothing
    shuffled = data.draw(st.permutations(new))
    assert manifest.add_entries(text, shuffled) == once  # fragment order does not matter
    half = len(new) // 2
    assert manifest.add_entries(manifest.add_entries(text, new[:half]), new[half:]) == once
    # every entry present once, and every original line still there, in its order
    got = manifest.entries(once)
    assert sorted(got) == sorted(set(manifest.entries(text)) | set(new))
    assert got == sorted(got, key=manifest.order_key)
    it = iter(once.splitlines())
    assert all(line in it for line in text.splitlines())
