"""QR codes as text: two module rows per terminal line with half-block characters."""

from __future__ import annotations

import segno

# Light modules are drawn (the console's background is dark), so a phone reads the code the
# right way round; index: (top light, bottom light).
_CELLS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_text(data: str, border: int = 1) -> str:
    """`data` as a QR code drawn in half blocks (about (21 + 4·v + 2·border) / 2 lines)."""
    code = segno.make(data, error="l", micro=False)
    rows = [[not bool(m) for m in row] for row in code.matrix_iter(scale=1, border=border)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        lines.append("".join(_CELLS[(t, b)] for t, b in zip(top, bottom, strict=True)))
    return "\n".join(lines)
