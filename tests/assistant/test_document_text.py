"""How reST and Markdown from the user's documents read once cleaned (assistant/documents/text.py)."""

from __future__ import annotations

from assistant.documents.text import clean_inline, paragraphs, readable, sentences

# As PEP 612 writes it: a literal glued to what follows by an escaped space.
PEP_612 = """\
``add_logging``\\ , a decorator which logs before each entry into the decorated
function, is an instance of the Python idiom of one function passing all arguments
given to it over to another function. When one defines a function (like ``inner``\\ ) that
takes ``(*args, **kwargs)``, the wrapping function can only be called in the ways the
wrapped function could be.
"""


def test_escaped_spaces_join_and_escaped_markup_is_itself():
    assert clean_inline(r"``bound``\ s and ``covariant``") == "bounds and covariant"
    assert clean_inline(r"\*not emphasis\* but *this* is, and snake\_case stays") == \
        "*not emphasis* but this is, and snake_case stays"
    assert clean_inline(r"C:\Users\me\notes.txt") == r"C:\Users\me\notes.txt"  # other backslashes as written


def test_a_paragraph_with_escapes_stays_one_paragraph_of_whole_sentences():
    found = paragraphs(PEP_612)
    assert len(found) == 1
    said = sentences(found[0].text)
    assert said[0].startswith("add_logging, a decorator which logs before each entry")
    assert said[1].startswith("When one defines a function (like inner) that takes (*args, **kwargs)")
    assert "\\" not in readable(PEP_612)
