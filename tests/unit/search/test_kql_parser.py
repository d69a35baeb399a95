"""The KQL parser: query text to syntax tree, and the errors for text that does not parse."""

from __future__ import annotations

import datetime as dt

import pytest

from m365lake.errors import KqlSyntaxError, UnknownPropertyError
from m365lake.search import fields
from m365lake.search.kql import (
    MAX_DEPTH,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    And,
    Compare,
    DateSpan,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Range,
    RelativeDate,
    Term,
    parse,
)

UTC = dt.UTC
KB = 1024
MB = 1024 * KB
GB = 1024 * MB


def day(year: int, month: int, date: int) -> DateSpan:
    start = dt.datetime(year, month, date, tzinfo=UTC)
    return DateSpan(start, start + dt.timedelta(days=1))


def instant(*parts: int, length: dt.timedelta) -> DateSpan:
    start = dt.datetime(*parts, tzinfo=UTC)
    return DateSpan(start, start + length)


SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)

PARSED: list[tuple[str, Node]] = [
    # free text, case and operators
    ("budget", Term("budget")),
    ("Budget", Term("Budget")),
    ("budget report", And((Term("budget"), Term("report")))),
    ("budget AND report", And((Term("budget"), Term("report")))),
    ("budget OR report", Or((Term("budget"), Term("report")))),
    ("budget and report", And((Term("budget"), Term("and"), Term("report")))),
    ("budget or report", And((Term("budget"), Term("or"), Term("report")))),
    ("not budget", And((Term("not"), Term("budget")))),
    ("NOT budget", Not(Term("budget"))),
    ("-budget", Not(Term("budget"))),
    ("--budget", Not(Not(Term("budget")))),
    ("budget -report", And((Term("budget"), Not(Term("report"))))),
    ("budget NOT report", And((Term("budget"), Not(Term("report"))))),
    ("budget AND NOT report", And((Term("budget"), Not(Term("report"))))),
    ("budget OR NOT report", Or((Term("budget"), Not(Term("report"))))),
    ("a OR b c", Or((Term("a"), And((Term("b"), Term("c")))))),
    ("a b OR c d", Or((And((Term("a"), Term("b"))), And((Term("c"), Term("d")))))),
    ("(a OR b) c", And((Or((Term("a"), Term("b"))), Term("c")))),
    ("((a))", Term("a")),
    ("a AND (b OR (c AND d))", And((Term("a"), Or((Term("b"), And((Term("c"), Term("d")))))))),
    ("-(a OR b)", Not(Or((Term("a"), Term("b"))))),
    ("  budget\t\n", Term("budget")),
    # phrases, punctuation and prefixes
    ('"budget report"', Phrase("budget report")),
    ("\u201cbudget report\u201d", Phrase("budget report")),
    ('-"budget report"', Not(Phrase("budget report"))),
    ('"budget"report', And((Phrase("budget"), Term("report")))),
    ("jeff.skilling@enron.com", Term("jeff.skilling@enron.com")),
    ("e-mail", Term("e-mail")),
    ("a+b", Term("a+b")),
    ("enro*", Prefix("enro")),
    ("Enro*", Prefix("Enro")),
    ("jeff.skil*", Prefix("jeff.skil")),
    ("-enro*", Not(Prefix("enro"))),
    # NEAR and ONEAR
    ("budget NEAR report", Near(Term("budget"), Term("report"), 8, ordered=False)),
    ("budget NEAR(3) report", Near(Term("budget"), Term("report"), 3)),
    ("budget NEAR(n=3) report", Near(Term("budget"), Term("report"), 3)),
    ("budget NEAR(0) report", Near(Term("budget"), Term("report"), 0)),
    ('budget ONEAR(2) "q1 report"', Near(Term("budget"), Phrase("q1 report"), 2, ordered=True)),
    ('"q1 budget" NEAR "final report"', Near(Phrase("q1 budget"), Phrase("final report"))),
    ("budget near report", And((Term("budget"), Term("near"), Term("report")))),
    ("a NEAR b OR c", Or((Near(Term("a"), Term("b")), Term("c")))),
    ("x a NEAR b", And((Term("x"), Near(Term("a"), Term("b"))))),
    ("NOT a NEAR b", Not(Near(Term("a"), Term("b")))),
    # text properties
    ("from:jeff", Term("jeff", "from")),
    ("FROM:Jeff", Term("Jeff", "from")),
    ("from:jeff.skilling@enron.com", Term("jeff.skilling@enron.com", "from")),
    ('from="Jeff Skilling"', Phrase("Jeff Skilling", "from")),
    ('subject:"q1 report"', Phrase("q1 report", "subject")),
    ("subject:(budget OR report)", Or((Term("budget", "subject"), Term("report", "subject")))),
    ("subject:(budget report)", And((Term("budget", "subject"), Term("report", "subject")))),
    (
        "subject:(budget -draft)",
        And((Term("budget", "subject"), Not(Term("draft", "subject")))),
    ),
    (
        'subject:(budget NEAR(2) "q1 report")',
        Near(Term("budget", "subject"), Phrase("q1 report", "subject"), 2),
    ),
    ("subject:enro*", Prefix("enro", "subject")),
    ("participants:enron.com", Term("enron.com", "participants")),
    ("to:ken cc:mary", And((Term("ken", "to"), Term("mary", "cc")))),
    ("bcc:legal recipients:ken", And((Term("legal", "bcc"), Term("ken", "recipients")))),
    ("body:merger", Term("merger", "body")),
    ("attachmentnames:report.xlsx", Term("report.xlsx", "attachmentnames")),
    ('folder:"Inbox/Projects"', Phrase("Inbox/Projects", "folder")),
    ("category:red custodian:jeff", And((Term("red", "category"), Term("jeff", "custodian")))),
    ("filename:report author:ken", And((Term("report", "filename"), Term("ken", "author")))),
    ("createdby:ken modifiedby:mary", And((Term("ken", "createdby"), Term("mary", "modifiedby")))),
    (
        'path:"/Finance/Q1" site:finance',
        And((Phrase("/Finance/Q1", "path"), Term("finance", "site"))),
    ),
    ("title:plan", Term("plan", "title")),
    ("subject<>draft", Not(Term("draft", "subject"))),
    # juxtaposed restrictions on one property are ORed ([MS-KQL] 2.2.4)
    ("from:jeff from:ken", Or((Term("jeff", "from"), Term("ken", "from")))),
    ("from:jeff AND from:ken", And((Term("jeff", "from"), Term("ken", "from")))),
    ("from:jeff to:ken", And((Term("jeff", "from"), Term("ken", "to")))),
    (
        "from:jeff budget from:ken",
        And((Or((Term("jeff", "from"), Term("ken", "from"))), Term("budget"))),
    ),
    ("from:jeff -from:ken", And((Term("jeff", "from"), Not(Term("ken", "from"))))),
    (
        "from:(jeff OR ken) from:mary",
        Or((Term("jeff", "from"), Term("ken", "from"), Term("mary", "from"))),
    ),
    # keyword properties
    ("kind:email", Term("email", "kind")),
    ("kind:docs kind:email", Or((Term("docs", "kind"), Term("email", "kind")))),
    ("kind:EMAIL", Term("EMAIL", "kind")),
    ("kind:do*", Prefix("do", "kind")),
    ("kind:meetings", Term("meetings", "kind")),
    ("kind:contacts", Term("contacts", "kind")),
    ("kind:MicrosoftTeams", Term("MicrosoftTeams", "kind")),
    ("kind:micro*", Prefix("micro", "kind")),
    ("importance:HIGH", Term("high", "importance")),
    ("importance:medium", Term("normal", "importance")),
    ('importance:"low"', Term("low", "importance")),
    ("filetype:pdf", Term("pdf", "filetype")),
    ("fileextension:.docx", Term("docx", "fileextension")),
    ("filetype:xls*", Prefix("xls", "filetype")),
    # booleans
    ("hasattachment:true", Compare("hasattachment", "=", True)),
    ("hasattachment:FALSE", Compare("hasattachment", "=", False)),
    ("isread:yes", Compare("isread", "=", True)),
    ("isread:no", Compare("isread", "=", False)),
    ("isread:1", Compare("isread", "=", True)),
    ("isread=0", Compare("isread", "=", False)),
    ('isread:"true"', Compare("isread", "=", True)),
    # dates
    ("sent:2001-05-01", Compare("sent", "=", day(2001, 5, 1))),
    ("sent=2001-5-1", Compare("sent", "=", day(2001, 5, 1))),
    ("sent>2001-05-01", Compare("sent", ">", day(2001, 5, 1))),
    ("sent>=2001-05-01", Compare("sent", ">=", day(2001, 5, 1))),
    ("sent<2001-05-01", Compare("sent", "<", day(2001, 5, 1))),
    ("sent<=2001-05-01", Compare("sent", "<=", day(2001, 5, 1))),
    ("received:05/01/2001", Compare("received", "=", day(2001, 5, 1))),
    (
        "sent:2001-05-01T10:30:00Z",
        Compare("sent", "=", instant(2001, 5, 1, 10, 30, 0, length=SECOND)),
    ),
    (
        "sent:2001-05-01T12:30+02:00",
        Compare("sent", "=", instant(2001, 5, 1, 10, 30, length=MINUTE)),
    ),
    (
        "sent:2001-05-01T10:30:15.250Z",
        Compare("sent", "=", instant(2001, 5, 1, 10, 30, 15, length=SECOND)),
    ),
    (
        "created>2001-05-01T00:00:00-0500",
        Compare("created", ">", instant(2001, 5, 1, 5, 0, 0, length=SECOND)),
    ),
    ("sent:2001-05-01..2001-05-31", Range("sent", day(2001, 5, 1), day(2001, 5, 31))),
    ("created:yesterday", Compare("created", "=", RelativeDate("yesterday"))),
    ("sent:TODAY", Compare("sent", "=", RelativeDate("today"))),
    ('lastmodifiedtime:"this week"', Compare("lastmodifiedtime", "=", RelativeDate("this week"))),
    ('received>="Last  Month"', Compare("received", ">=", RelativeDate("last month"))),
    (
        'received:"last month".."this month"',
        Range("received", RelativeDate("last month"), RelativeDate("this month")),
    ),
    ("sent:yesterday..today", Range("sent", RelativeDate("yesterday"), RelativeDate("today"))),
    (
        "sent>=2001-01-01 sent<2001-02-01",
        And((Compare("sent", ">=", day(2001, 1, 1)), Compare("sent", "<", day(2001, 2, 1)))),
    ),
    (
        "sent:2001-01-01 sent:2001-01-02",
        Or((Compare("sent", "=", day(2001, 1, 1)), Compare("sent", "=", day(2001, 1, 2)))),
    ),
    ("sent<>2001-01-01", Not(Compare("sent", "=", day(2001, 1, 1)))),
    (
        "sent:(2001-01-01 OR 2001-01-03)",
        Or((Compare("sent", "=", day(2001, 1, 1)), Compare("sent", "=", day(2001, 1, 3)))),
    ),
    # sizes
    ("size>1MB", Compare("size", ">", MB)),
    ("size:1024", Compare("size", "=", 1024)),
    ("size<=1.5KB", Compare("size", "<=", 1536)),
    ("size>=10b", Compare("size", ">=", 10)),
    ('size<"5 GB"', Compare("size", "<", 5 * GB)),
    ("size:1KB..2KB", Range("size", KB, 2 * KB)),
    ("size:(1KB OR 2KB)", Or((Compare("size", "=", KB), Compare("size", "=", 2 * KB)))),
    # everything together
    (
        'from:jeff subject:"q1 report" sent>=2001-01-01 -budget hasattachment:true',
        And(
            (
                Term("jeff", "from"),
                Phrase("q1 report", "subject"),
                Compare("sent", ">=", day(2001, 1, 1)),
                Not(Term("budget")),
                Compare("hasattachment", "=", True),
            )
        ),
    ),
]


@pytest.mark.parametrize(("query", "expected"), PARSED, ids=[query for query, _ in PARSED])
def test_parse_table(query: str, expected: Node) -> None:
    assert parse(query) == expected


def test_parse_table_is_large() -> None:
    assert len(PARSED) >= 60


# (query, position, text in expected, text in the message)
KINDS = "email or docs or meetings or contacts or microsoftteams"
ERRORS: list[tuple[str, int, str, str]] = [
    ("", 0, "a word", "the query is empty"),
    ("   \t", 0, "a word", "the query is empty"),
    ("a AND", 5, "a word", "ends where a term is needed"),
    ("AND a", 0, "a word", "AND needs a term on each side"),
    ("a OR OR b", 5, "a word", "OR needs a term on each side"),
    ("(a b", 4, "')'", "the '(' at offset 0 is not closed"),
    ("a b)", 3, "the end of the query", "')' has no '('"),
    ("()", 1, "a word", "')' closes a group"),
    ('"unterminated phrase', 0, "a closing quote", "no closing quote"),
    ("from:", 5, "a value right after from:", "from: has no value"),
    ("from: jeff", 5, "a value right after from:", "there is a space after from:"),
    ("subject>budget", 7, "':' or '='", "> applies only to date and size properties"),
    ("hasattachment:maybe", 14, "true, false", "invalid value for hasattachment: 'maybe'"),
    ("isread:2", 7, "true, false, yes, no, 1 or 0", "invalid value for isread"),
    ("importance:urgent", 11, "high, normal (or medium) or low", "'urgent'"),
    ("kind:nonsense", 5, KINDS, "invalid value for kind: 'nonsense'"),
    ("kind:tasks", 5, KINDS, "the archive contains only email"),
    ("kind:x*", 5, KINDS, "invalid value for kind: 'x'"),
    ("sent:2001-02-30", 5, "YYYY-MM-DD", "'2001-02-30' is not a valid date"),
    ("sent:soonish", 5, "YYYY-MM-DD", "'soonish' is not a date"),
    ("sent:this week", 5, "YYYY-MM-DD", 'must be quoted, e.g. sent:"this week"'),
    ("sent:1500-01-01", 5, "YYYY-MM-DD", "outside the dates the index can store"),
    ("sent:2001-05-01T25:00Z", 5, "ISO datetime", "not a valid datetime"),
    ("size>lots", 5, "a number of bytes", "'lots' is not a size"),
    ("size:1.3B", 5, "a number of bytes", "not a whole number of bytes"),
    ("size:2001-01-01..", 5, "a range low..high", "not a single value or a two-ended range"),
    ("sent:2001-02-01..2001-01-01", 5, "start is not after its end", "is empty"),
    ("sent>2001-01-01..2001-02-01", 5, "sent:low..high", "a range takes ':', not >"),
    ("!!!", 0, "a word with letters or digits", "'!!!' has no letters or digits"),
    ("a - b", 2, "a word with letters or digits", "'-' has no letters or digits"),
    ('subject:"..."', 8, "a word with letters or digits", "has no letters or digits"),
    ("x" * 40, 0, "a word with letters or digits", "40 bytes or longer"),
    ("ab*", 0, "at least 3 letters or digits before *", "'ab' is too short"),
    ("jeff.sk*", 0, "at least 3 letters", "'sk' is too short"),
    ("a*b", 1, "a word ending in *", "only a trailing * (a prefix match) is supported"),
    ("*", 0, "a word ending in *", "only a trailing * (a prefix match) is supported"),
    ("budget.*", 7, "a letter or digit right before *", "follows '.'"),
    ("a NEAR b NEAR c", 9, "AND or OR between NEAR expressions", "exactly two"),
    ("NEAR b", 0, "a word", "NEAR needs a word or phrase on each side"),
    ("a NEAR", 6, "a word", "ends where a term is needed"),
    ("a NEAR(x) b", 6, "a distance such as NEAR(5)", "must be followed by a number"),
    ("a NEAR(101) b", 2, "a distance of at most 100", "NEAR(101) is too far"),
    ("enro* NEAR b", 0, "a word or a quoted phrase on each side of NEAR", "subject:(budget"),
    ("from:a NEAR b", 0, "a word or a quoted phrase", "cannot take"),
    ("a NEAR (b)", 7, "a word or a quoted phrase", "cannot take"),
    ("from:(to:x)", 6, "a value for from", "cannot be nested"),
    ("kind:(email NEAR docs)", 12, "a text property, not kind", "kind is a keyword property"),
    ("sent:(2001-01-01 NEAR 2001-01-02)", 17, "a text property", "sent is a date property"),
    ("size>(1 OR 2)", 5, "a single value", "takes one value, not a group"),
    ("kind:", 5, "a value right after kind:", "has no value"),
    ('kind:""', 5, "a value for kind", "the value is empty"),
]


@pytest.mark.parametrize(
    ("query", "position", "expected", "problem"), ERRORS, ids=[query for query, *_ in ERRORS]
)
def test_parse_errors(query: str, position: int, expected: str, problem: str) -> None:
    with pytest.raises(KqlSyntaxError) as caught:
        parse(query)
    error = caught.value
    assert error.position == position
    assert expected in error.expected
    message = str(error)
    assert problem in message
    assert f"offset {position}" in message
    assert error.query == query


def test_error_message_has_caret() -> None:
    with pytest.raises(KqlSyntaxError) as caught:
        parse("budget AND (report OR")
    lines = str(caught.value).splitlines()
    assert lines[1] == "    budget AND (report OR"
    assert lines[2] == "    " + " " * 21 + "^"


def test_error_caret_in_long_query() -> None:
    query = "a " * 100 + "sent:nope " + "b " * 100
    with pytest.raises(KqlSyntaxError) as caught:
        parse(query)
    error = caught.value
    assert error.position == 205
    excerpt, caret = str(error).splitlines()[1:3]
    assert excerpt.startswith("    ...")
    assert excerpt.endswith("...")
    assert excerpt[caret.index("^") : caret.index("^") + 4] == "nope"


def test_unknown_property_lists_known() -> None:
    with pytest.raises(UnknownPropertyError) as caught:
        parse("budget Subjet:x")
    error = caught.value
    assert error.position == 7
    assert error.name == "Subjet"
    assert error.known == sorted(fields.PROPERTIES)
    assert "unknown property 'Subjet'" in str(error)
    assert "subject" in str(error)
    assert "put it in quotes" in str(error)


def test_unknown_property_in_free_text() -> None:
    with pytest.raises(UnknownPropertyError) as caught:
        parse("RE:budget")
    assert caught.value.name == "RE"
    assert parse('"RE:budget"') == Phrase("RE:budget")


def test_query_length_limit() -> None:
    longest = '"' + "x " * (MAX_QUERY_CHARS // 2 - 1) + '"'
    assert len(longest) == MAX_QUERY_CHARS
    assert parse(longest) == Phrase(longest[1:-1])
    with pytest.raises(KqlSyntaxError) as caught:
        parse(longest + "y")
    assert caught.value.position == MAX_QUERY_CHARS
    assert f"at most {MAX_QUERY_CHARS} characters" in caught.value.expected
    assert f"{MAX_QUERY_CHARS + 1} characters long" in str(caught.value)


def test_term_count_limit() -> None:
    assert parse(" ".join(["a"] * MAX_TERMS))
    with pytest.raises(KqlSyntaxError) as caught:
        parse(" ".join(["a"] * (MAX_TERMS + 1)))
    assert caught.value.position == 2 * MAX_TERMS
    assert "too many terms" in str(caught.value)


def test_nesting_depth_limit() -> None:
    assert parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH) == Term("a")
    with pytest.raises(KqlSyntaxError) as caught:
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    assert caught.value.position == MAX_DEPTH
    assert "nested too deeply" in str(caught.value)


def test_not_chain_depth_limit() -> None:
    with pytest.raises(KqlSyntaxError) as caught:
        parse("NOT " * (MAX_DEPTH + 1) + "a")
    assert caught.value.position == 4 * MAX_DEPTH
    with pytest.raises(KqlSyntaxError):
        parse("-" * 10_000 + "a")


def test_deep_input_does_not_recurse() -> None:
    with pytest.raises(KqlSyntaxError) as caught:
        parse("(" * 3000)
    assert "nested too deeply" in str(caught.value)


def test_ast_nodes_are_frozen() -> None:
    node = Term("a")
    with pytest.raises(AttributeError):
        node.text = "b"  # type: ignore[misc]
