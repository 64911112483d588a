import pytest
import torch

from cascbench.errors import CascbenchError
from cascbench.sorting import label_matrix, neuralsort, prefix_mask, softsort

OPERATORS = [neuralsort, softsort]


@pytest.mark.parametrize("operator", OPERATORS)
def test_rows_are_distributions(operator, generator):
    p = operator(torch.randn(4, 3, 12, generator=generator), tau=1.0)
    assert p.shape == (4, 3, 12, 12)
    torch.testing.assert_close(p.sum(-1), torch.ones(4, 3, 12))
    assert (p >= 0).all()


@pytest.mark.parametrize("operator", OPERATORS)
def test_low_temperature_gives_the_hard_sort(operator, generator):
    scores = torch.randn(5, 10, generator=generator)
    hard = torch.nn.functional.one_hot(scores.argsort(-1, descending=True), 10).float()
    torch.testing.assert_close(operator(scores, tau=1e-4), hard)


@pytest.mark.parametrize("operator", OPERATORS)
def test_permuting_items_permutes_columns(operator, generator):
    scores = torch.randn(3, 9, generator=generator)
    perm = torch.randperm(9, generator=generator)
    torch.testing.assert_close(operator(scores[:, perm], 0.7), operator(scores, 0.7)[..., perm])


def test_neuralsort_matches_its_formula_written_out():
    s = torch.tensor([0.3, -1.0, 2.0, 0.5])
    tau, n = 0.5, 4
    expected = torch.empty(n, n)
    for r in range(1, n + 1):
        logits = torch.tensor(
            [
                ((n + 1 - 2 * r) * s[i] - sum(abs(s[i] - s[j]) for j in range(n))) / tau
                for i in range(n)
            ]
        )
        expected[r - 1] = torch.softmax(logits, 0)
    torch.testing.assert_close(neuralsort(s, tau), expected)


def test_softsort_matches_its_formula_written_out():
    s = torch.tensor([0.3, -1.0, 2.0])
    sorted_s = [2.0, 0.3, -1.0]
    expected = torch.stack(
        [torch.softmax(torch.tensor([-abs(v - float(x)) / 0.2 for x in s]), 0) for v in sorted_s]
    )
    torch.testing.assert_close(softsort(s, 0.2), expected)


@pytest.mark.parametrize(
    "label",
    [
        [29.0, 27, 28, 7, 7, 7, 6, 6, 5, 5, 30, 30],  # RecFlow-like: padded GT slots tie at 30
        [3.0, 1, 2, 4, 0],  # distinct
        [1.0, 1, 1, 1],  # one block
    ],
)
def test_label_matrix_equals_neuralsort_at_tau_1e4(label):
    label = torch.tensor(label)
    expected = neuralsort(label, tau=1e-4)
    torch.testing.assert_close(label_matrix(label), expected, atol=1e-6, rtol=0)


def test_label_matrix_tie_block_is_uniform():
    y = label_matrix(torch.tensor([5.0, 9.0, 5.0, 5.0]))
    # item 1 (label 9) is first; items 0, 2, 3 share positions 2..4 with 1/3 each
    assert y[0, 1] == 1
    torch.testing.assert_close(y[1:, [0, 2, 3]], torch.full((3, 3), 1 / 3))
    assert y[1:, 1].sum() == 0


def test_prefix_mask_counts_valid_items_not_their_places():
    mask = torch.tensor([[True, False, True, True], [True, True, False, False]])
    assert prefix_mask(mask).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_non_positive_temperature_is_refused(tau):
    with pytest.raises(CascbenchError, match="tau"):
        neuralsort(torch.zeros(3), tau)


@pytest.mark.parametrize("operator", [neuralsort, softsort, "label"])
def test_clean_masking_equals_sorting_the_valid_items_alone(operator, generator):
    scores = torch.randn(6, 9, generator=generator)
    if operator == "label":
        scores = torch.randint(0, 4, (6, 9), generator=generator).float()  # ties

        def operator(values, tau, mask=None):
            return label_matrix(values, mask)

    mask = torch.rand(6, 9, generator=generator) > 0.35
    mask[0] = False  # a request without valid items
    full = operator(scores, 0.5, mask)
    assert torch.isfinite(full).all()
    for b in range(6):
        valid = mask[b].nonzero()[:, 0]
        n_valid = len(valid)
        expected = torch.zeros(9, 9)
        if n_valid:
            expected[:n_valid][:, valid] = operator(scores[b, valid], 0.5)
        torch.testing.assert_close(full[b], expected)


@pytest.mark.parametrize("operator", OPERATORS)
def test_clean_masking_gives_padded_items_no_gradient(operator, generator):
    scores = torch.randn(3, 7, generator=generator, requires_grad=True)
    mask = torch.rand(3, 7, generator=generator) > 0.3
    weights = torch.randn(3, 7, 7, generator=generator)
    (grad,) = torch.autograd.grad((operator(scores, 0.8, mask) * weights).sum(), scores)
    assert (grad[~mask] == 0).all() and (grad[mask] != 0).any()
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_in_float64(operator, masked, generator):
    scores = torch.randn(2, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True, True, False], [True] * 5]) if masked else None
    assert operator(scores, 0.7, mask).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda s: operator(s, 0.7, mask), (scores,))


def test_half_precision_inputs_are_sorted_in_float32():
    assert neuralsort(torch.randn(4, dtype=torch.bfloat16), 1.0).dtype == torch.float32


@pytest.mark.parametrize("operator", OPERATORS)
def test_clean_masking_ignores_non_finite_padded_scores(operator):
    scores = torch.tensor([[1.0, 0.5, -torch.inf, torch.nan]])
    mask = torch.tensor([[True, True, False, False]])
    assert torch.isfinite(operator(scores, 0.5, mask)).all()
