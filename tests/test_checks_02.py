"""The checks of notebook 02's exercises accept correct code and explain wrong code in words."""

from __future__ import annotations

import pytest
import torch

from slm_course import checks
from slm_course.checks import ch02
from slm_course.hubert import span_mask, warp_bands
from slm_course.unit_metrics import dtw_distance


def _hide_spans(starts, span):
    T = starts.shape[1]
    mask = torch.zeros_like(starts)
    for k in range(span):
        mask[:, k:] |= starts[:, : T - k]
    return mask


def _warp(frames, factor):
    B, T, M = frames.shape
    pos = (torch.arange(M, dtype=frames.dtype)[None, :] * factor[:, None]).clamp(max=M - 1)  # (B, M)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=M - 1)
    w = (pos - lo)[:, None, :]
    return frames.gather(2, lo[:, None].expand(B, T, M)) * (1 - w) + frames.gather(2, hi[:, None].expand(B, T, M)) * w


def _abx(a_tokens, b_tokens, x_tokens, tie=0.5, skip=True, same=lambda i, A, j, X: A is X):
    right, n = 0.0, 0
    for i, A in enumerate(a_tokens):
        for j, X in enumerate(x_tokens):
            if skip and same(i, A, j, X):
                continue
            for B in b_tokens:
                dax, dbx = dtw_distance(A, X), dtw_distance(B, X)
                right += 1.0 if dax < dbx else (tie if dax == dbx else 0.0)
                n += 1
    return 1 - right / n


@pytest.mark.parametrize(
    "check, fn",
    [(checks.check_hide_spans, _hide_spans), (checks.check_warp_bands, _warp), (checks.check_abx_error, _abx)],
)
def test_checks_accept_correct_solutions(check, fn, capsys):
    check(fn)
    assert capsys.readouterr().out.startswith("✓")


def test_reference_span_mask_is_the_packages():
    """The package's ``span_mask`` is the check's ``hide_spans`` applied to its random starts."""
    g, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    mask = span_mask(4, 60, 0.08, 5, generator=g)
    starts = torch.rand(4, 60, generator=g2) < 0.08
    starts[torch.arange(4), torch.randint(60, (4,), generator=g2)] = True
    assert torch.equal(mask, ch02._reference_hide_spans(starts, 5))


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda s, span: _hide_spans(s, span + 1), "off by one"),
        (lambda s, span: sum(torch.roll(s, k, dims=1) for k in range(span)).bool(), "wrap around"),
        (lambda s, span: ch02._reference_hide_spans(s, span, offset=-(span // 2)), "not centred"),
        (lambda s, span: s, "returned the starts|off by one"),
        (lambda s, span: sum(torch.roll(s.long(), k, dims=1) for k in range(span)), "or-ing|wrap around"),
        (lambda s, span: _hide_spans(s, span)[:, :-1], "shape"),
        (lambda s, span: ch02._reference_hide_spans(s, span, offset=-(span - 1)), "spans run forward"),
        (lambda s, span: ch02._reference_hide_spans(s, span - 1, offset=1), "start frame is hidden too"),
    ],
)
def test_hide_spans_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_hide_spans(wrong)


def test_hide_spans_check_shows_the_first_row_that_differs():
    """Row 0's spans copied to every row: the message shows row 1, where what came back differs from the expected."""
    def first_row_only(starts, span):
        return _hide_spans(starts[:1], span).expand_as(starts).clone()

    with pytest.raises(AssertionError, match=r"in row 1 of 4 you hid frames \[12, .*expected \[27, .*row 0's spans"):
        checks.check_hide_spans(first_row_only)


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda f, factor: warp_bands(f, 1 / factor), "not i / factor"),
        (lambda f, factor: f.gather(2, (torch.arange(f.shape[2])[None] * factor[:, None]).clamp(max=f.shape[2] - 1)
                                    .round().long()[:, None].expand(f.shape)), "interpolate linearly"),
        (lambda f, factor: f.transpose(1, 2), "shape"),
        (lambda f, factor: f * torch.nan, "NaN"),
        (lambda f, factor: warp_bands(f, factor[:1].expand(len(factor))), r"crop 1 \(factor 1\).*first crop's factor"),
    ],
)
def test_warp_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_warp_bands(wrong)


def test_warp_check_explains_a_read_past_the_top_band():
    def unclamped(frames, factor):
        B, T, M = frames.shape
        pos = torch.arange(M, dtype=frames.dtype)[None, :] * factor[:, None]
        lo = pos.floor().long()
        w = (pos - lo)[:, None, :]
        read = lambda idx: frames.gather(2, idx[:, None, :].expand(B, T, M))  # noqa: E731
        return (1 - w) * read(lo) + w * read(lo + 1)

    with pytest.raises(AssertionError, match="out of bounds.*clamp p to M - 1 before reading bands"):
        checks.check_warp_bands(unclamped)


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda a, b, x: 1 - _abx(a, b, x), "right"),
        (lambda a, b, x: _abx(a, b, x, skip=False), "same token"),
        (lambda a, b, x: _abx(a, b, x, tie=1.0), "tie"),
        (lambda a, b, x: torch.tensor([0.1, 0.2]), "one number"),
        (lambda a, b, x: _abx(a, b, x, same=lambda i, A, j, X: i == j), "with X from another speaker no trial is skipped"),
        (lambda a, b, x: _abx(a, b, x, same=lambda i, A, j, X: torch.equal(A, X)), "divided by zero.*A \\*is\\* X"),
    ],
)
def test_abx_check_explains_mistakes(wrong, words):
    with pytest.raises(AssertionError, match=words):
        checks.check_abx_error(wrong)


def test_quiz_key_passes_and_hubert_share_is_the_formula():
    checks.check_quiz("02", {i: q.answer for i, q in enumerate(ch02.QUIZ, start=1)})
    assert abs(ch02.QUIZ[0].answer - (1 - 0.935**10)) < 1e-3  # wav2vec 2.0: p = 0.065, span 10
    assert abs(ch02.QUIZ[0].answer - (1 - 0.92**10)) > ch02.QUIZ[0].tolerance  # not the share exercise 1 prints


def test_checks_02_name_what_learners_trip_on():
    # a share of trials computed in float32 is right
    def float32_abx(a_tokens, b_tokens, x_tokens):
        return float(torch.tensor(_abx(a_tokens, b_tokens, x_tokens), dtype=torch.float32))

    checks.check_abx_error(float32_abx)

    def empty_slice(starts, span):  # starts[:, :-0] is empty
        mask = starts.clone()
        for k in range(span):
            mask[:, k:] |= starts[:, :-k]
        return mask

    with pytest.raises(AssertionError, match="-0 is 0"):
        checks.check_hide_spans(empty_slice)

    def aliased(starts, span):  # the growing mask is shifted, not the starts: spans cascade
        h = starts
        for k in range(1, span):
            h[:, k:] = h[:, k:] | h[:, :-k]
        return h

    with pytest.raises(AssertionError, match="without .clone"):
        checks.check_hide_spans(aliased)
    checks.check_quiz("02", {1: 0.5, 2: "b", 3: "a", 4: "a", 5: "b"})  # "about what share": 0.5 for 0.489
