"""``python -m bench.masking``: what scanning and masking a prompt costs, in µs per KB.

Three prompts, each the user message of an OpenAI chat body with a short system message, under
a policy with every built-in detector on and action `mask`: a clean English prompt (~4 KB, no
sensitive data: the fast path), a dense one (~4 KB of customer records, each with an email, a
phone number and a card number, all different), and a large one (64 KB of prose with a record
every ~2 KB). `scan_request` is the whole request-side step (walk the body, detect, mask, copy
the changed containers). Restoring is measured on an answer that repeats the masked prompt:
`restore_text` in one piece, and a `stream()` fed 16-character deltas. Prints a Markdown
table; the issue's target is a scan of at most 50 µs per KB. `--breakdown` adds where each
scan's time goes (shape, detector passes, merging, masking and the body).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.masking import BUILTIN, Policy, Restorer, scan_request
from gateway.masking._text import Pass, Text

TARGET_US_PER_KB = 50.0

_PROSE = (
    "Thanks for joining the planning call on Tuesday. As discussed, the team will move the "
    "quarterly report to the new pipeline before the release, and we expect the migration "
    "to take about 3 weeks. ",
    "Could you summarise the attached meeting notes in plain language? Focus on the decisions, "
    "the open questions and who owns each follow-up; keep it under 200 words. ",
    "The latency budget for the search service is 250 ms at the 99th percentile, and version "
    "2.4.1 of the client library still retries too eagerly (see section 4.2 of the design). ",
    "Our customers in Europe asked for invoices in their own currency: the finance team "
    "proposed a switch in Q3, after the audit, with a fallback to USD for older contracts. ",
    "Please rewrite the following paragraph so that it reads well for a non-technical "
    "audience, without losing the point about data retention and the 30-day deletion window. ",
    "Note: the on-call rotation changes at 09:00 on Monday; escalations go to the platform "
    "lead first, then to the incident channel [priority: high] if nobody answers in 15 min. ",
)


def _luhn_complete(body: str) -> str:
    """`body` with the Luhn check digit appended."""
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _record(i: int) -> str:
    card = _luhn_complete(f"4{i:014d}"[:15])
    grouped = " ".join(card[k : k + 4] for k in range(0, 16, 4))
    return (
        f"Customer #{i}: Jane Doe{i} <jane.doe{i}@example{i % 7}.com>, phone "
        f"+1 415 555 {1000 + i:04d}, card {grouped}; asked about the renewal of plan {i % 5} "
        f"and the invoice dated 2024-05-{1 + i % 28:02d}.\n"
    )


def clean_prompt(size: int = 4096) -> str:
    """English prose without sensitive data, `size` characters."""
    out = ""
    i = 0
    while len(out) < size:
        out += _PROSE[i % len(_PROSE)]
        i += 1
    return out[:size].rsplit(" ", 1)[0]


def dense_prompt(size: int = 4096) -> str:
    """Customer records, each with a different email, phone and card."""
    out = "Here are the customers who called this week:\n"
    i = 0
    while len(out) + len(_record(i)) <= size:
        out += _record(i)
        i += 1
    return out


def large_prompt(size: int = 65536) -> str:
    """Prose with one customer record about every 2 KB."""
    out = ""
    i = 0
    while len(out) < size - 200:
        out += clean_prompt(1900) + "\n" + _record(i)
        i += 1
    return out


def _body(prompt: str) -> dict[str, Any]:
    return {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for the support team."},
            {"role": "user", "content": prompt},
        ],
    }


_RUNS = 20


def _best(fn: Callable[[], object], rounds: int) -> float:
    """CPU µs per call: the best of 20 runs of `rounds` // 20 calls. CPU time, not wall time:
    on a shared 2-core box a wall clock also counts the time other processes ran. Many short
    runs rather than a few long ones: allocation-heavy code runs up to 2x slower on this VM
    for seconds at a time (see bench/README.md), and the best run is the one least slowed."""
    for _ in range(3):
        fn()
    n = max(rounds // _RUNS, 1)
    best = float("inf")
    for _ in range(_RUNS):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def _stream(restorer: Restorer, text: str) -> str:
    s = restorer.stream()
    return "".join(s.feed(text[i : i + 16]) for i in range(0, len(text), 16)) + s.flush()


class Row(NamedTuple):
    """One prompt's figures (µs) and what was masked."""

    kb: float
    found: int
    scan: float
    restore: float
    stream: float


def measure(prompt: str, policy: Policy, rounds: int) -> Row:
    """Scan, restore and stream-restore one prompt."""
    body = _body(prompt)
    result = scan_request(body, "openai", policy)
    scan = _best(lambda: scan_request(body, "openai", policy), rounds)
    restorer = result.restorer
    found = len(restorer.values) if restorer else 0
    restore = stream = 0.0
    if restorer is not None:
        answer = result.body["messages"][1]["content"]
        assert restorer.restore_text(answer) == prompt
        assert _stream(restorer, answer) == prompt
        restore = _best(lambda: restorer.restore_text(answer), rounds)
        stream = _best(lambda: _stream(restorer, answer), rounds)
    return Row(len(prompt.encode()) / 1024, found, scan, restore, stream)


def _fastest(rows: list[Row]) -> Row:
    """Each figure's best over the repeats."""
    first = rows[0]
    return first._replace(
        scan=min(r.scan for r in rows),
        restore=min(r.restore for r in rows),
        stream=min(r.stream for r in rows),
    )


def _line(name: str, row: Row) -> str:
    per_kb = row.scan / row.kb
    ok = "met" if per_kb <= TARGET_US_PER_KB else "NOT met"
    return (
        f"| {name} | {row.kb:.1f} | {row.found} | {row.scan:.0f} | {per_kb:.1f} | "
        f"{row.restore:.0f} | {row.stream:.0f} | {row.scan + row.restore:.0f} | "
        f"≤ {TARGET_US_PER_KB:.0f} µs/KB: {ok} |"
    )


def breakdown(name: str, prompt: str, policy: Policy, rounds: int) -> str:
    """One row of where a scan's time goes: the shape, each detector pass, sorting and merging
    the findings, then the rest of `scan_request` (masking, walking and copying the body, the
    system message). Each stage is timed on its own, so the stages need not add up exactly."""
    assert policy.scanner is not None
    scanner = policy.scanner
    body = _body(prompt)
    shape = _best(lambda: Text(prompt).shape, rounds)
    passes = []
    for p in scanner.passes:
        t = Text(prompt)
        t.shape  # noqa: B018 - made once, outside the pass's figure

        def one_pass(p: Pass = p, t: Text = t) -> None:
            p.find(t, [])

        passes.append(_best(one_pass, rounds))
    spans = _best(lambda: scanner.spans(prompt), rounds)
    scan = _best(lambda: scan_request(body, "openai", policy), rounds)
    cells = [shape, *passes, spans - shape - sum(passes), scan - spans, scan]
    return f"| {name} | " + " | ".join(f"{c:.0f}" for c in cells) + " |"


def main() -> int:
    """Print the table; exit 1 when a prompt's scan misses the target."""
    p = argparse.ArgumentParser(prog="python -m bench.masking", description=__doc__)
    p.add_argument("--rounds", type=int, default=500, help="calls per 4 KB case (64 KB: / 16)")
    p.add_argument(
        "--repeat", type=int, default=3, help="passes over the prompts; each figure is the best"
    )
    p.add_argument(
        "--breakdown", action="store_true", help="also print where each scan's time goes (µs)"
    )
    a = p.parse_args()
    policy = Policy.build(dict.fromkeys(BUILTIN, "mask"))
    off = Policy()
    body = _body(clean_prompt())
    print(
        f"no rules (policy off): {_best(lambda: scan_request(body, 'openai', off), 10_000):.2f} µs"
    )
    print()
    print(
        "| prompt | KB | values masked | scan µs | scan µs/KB | restore µs | stream restore µs "
        "| mask+restore µs | target |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    cases = (
        ("clean English", clean_prompt(), a.rounds),
        ("dense (email, phone, card)", dense_prompt(), a.rounds),
        ("large, 64 KB", large_prompt(), max(a.rounds // 16, 5)),
    )
    # The prompts in turn, `--repeat` times: a slow spell of the VM then hits one pass of each
    # rather than all of one prompt's runs.
    measured: dict[str, list[Row]] = {name: [] for name, _, _ in cases}
    for _ in range(a.repeat):
        for name, prompt, rounds in cases:
            measured[name].append(measure(prompt, policy, rounds))
    rows = {name: _fastest(r) for name, r in measured.items()}
    for name, row in rows.items():
        print(_line(name, row))
    worst = max(r.scan / r.kb for r in rows.values())
    # What a value costs beyond the scan of plain text: dense minus clean, per value.
    clean, dense = rows["clean English"], rows["dense (email, phone, card)"]
    extra = dense.scan - clean.scan / clean.kb * dense.kb
    print()
    print(f"per value found, checked and masked: {extra / dense.found:.1f} µs")
    if a.breakdown:
        assert policy.scanner is not None
        stages = ["shape", *(", ".join(p.names) for p in policy.scanner.passes)]
        stages += ["sort, merge", "mask, body copy, system message", "scan"]
        print()
        print("| prompt (µs) | " + " | ".join(stages) + " |")
        print("| --- |" + " ---: |" * len(stages))
        for name, prompt, rounds in cases:
            print(breakdown(name, prompt, policy, rounds))
    return 0 if worst <= TARGET_US_PER_KB else 1


if __name__ == "__main__":
    raise SystemExit(main())
