"""Replies keep the line breaks they were written with, and Markdown's own blocks still work."""

from __future__ import annotations

from PySide6.QtGui import QTextDocument

from ui.markdown import keep_line_breaks, render
from ui.theme import COLORS

POEM = "Roses are red,\nViolets are blue,\nSugar is sweet."


def test_a_poem_keeps_its_lines(qapp):
    document = QTextDocument()
    render(document, POEM, COLORS["light"])
    assert document.toPlainText().split("\n")[:3] == ["Roses are red,", "Violets are blue,", "Sugar is sweet."]


def test_code_tables_and_lists_are_left_to_markdown(qapp):
    text = "Steps:\n- one\n- two\n\n```\nx = 1\ny = 2\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    kept = keep_line_breaks(text)
    assert "x = 1\ny = 2" in kept and "| a | b |\n|---|---|" in kept  # untouched
    document = QTextDocument()
    render(document, text, COLORS["light"])
    plain = document.toPlainText()
    assert "x = 1\ny = 2" in plain and "one\ntwo" in plain
    assert document.toPlainText().count("|") == 0  # the table is a table, not text
