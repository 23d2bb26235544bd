"""CSV that admins open in Excel: a BOM so Chinese reads right, and no cell
that Excel would run as a formula."""

from __future__ import annotations

import csv
import io
from typing import Iterable

#: What makes Excel (and LibreOffice) read a cell as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value``, with a text that Excel would run as a formula (a name such as
    ``=HYPERLINK(...)`` typed by a user) prefixed with ``'`` so it shows as text,
    and a text of digits that Excel would read as a number wrapped as ``="…"``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, str) and value.isascii() and value.isdigit() and (len(value) >= 12 or value[0] == "0" and len(value) > 1):
        # A credit code of 18 digits (914403001922038216) showed as 9.14403E+17
        # and was saved back as …038000 (Excel keeps 15 digits); a leading 0 was
        # dropped. ="…" is the one form Excel keeps as text; digits alone run nothing.
        return f'="{value}"'
    return value


class ExcelCsv:
    """Rows written into a buffer, taken out in pieces to stream."""

    def __init__(self, header: Iterable[str], bom: bool = True) -> None:
        self._buffer = io.StringIO()
        if bom:
            self._buffer.write("\ufeff")
        self._writer = csv.writer(self._buffer)
        self._writer.writerow(header)

    def row(self, values: Iterable[object]) -> None:
        self._writer.writerow([safe_cell(v) for v in values])

    @property
    def size(self) -> int:
        return self._buffer.tell()

    def take(self) -> str:
        """What was written since the last take."""
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text
