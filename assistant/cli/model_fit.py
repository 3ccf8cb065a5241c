"""How each model fits this machine, as columns of `assistant models list`. CLI main thread
(the first call for a data folder measures the memory bandwidth, under a second)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.models import views

if TYPE_CHECKING:
    from assistant.app import Services


def with_fit_columns(rows: list[tuple], records: list, services: "Services") -> list[tuple]:
    """``rows`` (a header, then one row per record, in the order of ``records``) with FIT,
    TOK/S and MAX CTX added: the label, the expected decode speed and the longest context
    that fits in free memory now."""
    fits = views.model_fits(services)
    extended = [tuple(rows[0]) + ("FIT", "TOK/S", "MAX CTX")]
    for row, record in zip(rows[1:], records):
        fit = fits.get(record.id)
        if fit is None:
            cells = ("-", "-", "-")
        else:
            cells = (fit.label, f"{fit.tokens_per_s:.0f}" if fit.tokens_per_s else "?", f"{fit.largest_context:,}")
        extended.append(tuple(row) + cells)
    return extended
