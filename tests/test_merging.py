"""Merging task vectors: PEFT's functions as xstilts calls them, checked against the papers on small known tensors,
and a merge of real (tiny) encoders that loads back as a Hugging Face model."""

from __future__ import annotations

import pytest
import torch

from xstilts.errors import XstiltsError
from xstilts.train.merging import merge_states
from xstilts.train.request import MergeSettings

BASE = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0]), "ids": torch.arange(4)}
DELTA_1 = torch.tensor([3.0, -1.0, 0.5, 2.0])
DELTA_2 = torch.tensor([-2.0, -4.0, 1.0, 0.1])
TUNED = [{"w": BASE["w"] + DELTA_1, "ids": torch.arange(4)}, {"w": BASE["w"] + DELTA_2, "ids": torch.arange(4)}]


def test_task_arithmetic_adds_lambda_times_the_sum_of_task_vectors():
    merged = merge_states(BASE, TUNED, MergeSettings("task_arithmetic", weight=0.4))
    torch.testing.assert_close(merged["w"], BASE["w"] + 0.4 * (DELTA_1 + DELTA_2))
    assert torch.equal(merged["ids"], BASE["ids"]), "integer buffers are the base's"
    alone = merge_states(BASE, TUNED[:1], MergeSettings("task_arithmetic", weight=1.0))
    torch.testing.assert_close(alone["w"], TUNED[0]["w"]), "one model at lambda 1 is that model"


def test_ties_trims_elects_the_sign_by_mass_and_averages_the_agreeing_entries():
    """Yadav et al. 2023 by hand. Density 0.5 keeps two entries of each: [3, 0, 0, 2] and [-2, -4, 0, 0]. The
    summed mass [1, -4, 0, 2] elects signs [+, -, + (a zero elects +), +]; each entry is the mean over the task
    vectors that are non-zero with the elected sign: [3, -4, 0, 2]; times lambda."""
    merged = merge_states(BASE, TUNED, MergeSettings("ties", weight=0.5, density=0.5))
    torch.testing.assert_close(merged["w"], BASE["w"] + 0.5 * torch.tensor([3.0, -4.0, 0.0, 2.0]))
    # Agreeing entries are averaged, not summed (unlike task arithmetic): two equal vectors give that vector.
    same = merge_states(BASE, [TUNED[0], TUNED[0]], MergeSettings("ties", weight=1.0, density=1.0))
    torch.testing.assert_close(same["w"], TUNED[0]["w"])


def test_dare_drops_with_one_minus_density_rescales_and_keeps_the_expectation():
    """Yu et al. 2024: each entry kept with probability `density` and divided by it, so the expectation of the
    merge is task arithmetic's; the draws follow the seed."""
    big = {"w": torch.zeros(20_000)}
    delta = torch.linspace(-1, 1, 20_000)
    tuned = [{"w": delta}, {"w": 2 * delta}]
    merged = merge_states(big, tuned, MergeSettings("dare_linear", weight=1.0, density=0.25, seed=3))["w"]
    share = merged / delta
    assert set(torch.round(share, decimals=3).tolist()) <= {0.0, 4.0, 8.0, 12.0}, (
        "each kept whole (/ density) or dropped"
    )
    kept_first = (share.round() % 8 != 0).float().mean().item()  # task 1 contributes 4 (alone) or 12 (with task 2)
    assert abs(kept_first - 0.25) < 0.02
    means = torch.stack(
        [merge_states(big, tuned, MergeSettings("dare_linear", density=0.25, seed=s))["w"] for s in range(40)]
    ).mean(0)
    # per entry, means / delta has mean 3 and variance 15 / 40: over 20,000 entries the average is 3 within 0.03
    assert abs((means / delta).mean().item() - 3) < 0.03, "unbiased: the expectation is task arithmetic's"
    again = merge_states(big, tuned, MergeSettings("dare_linear", density=0.25, seed=3))["w"]
    assert torch.equal(again, merged)
    assert not torch.equal(merge_states(big, tuned, MergeSettings("dare_linear", density=0.25, seed=4))["w"], merged)


def test_dare_ties_drops_then_elects_signs():
    """With density 1 nothing is dropped and DARE-TIES is TIES without trimming: the disjoint mean."""
    merged = merge_states(BASE, TUNED, MergeSettings("dare_ties", weight=1.0, density=1.0))
    # signs of the sum [1, -5, 1.5, 2.1]: [+, -, +, +]; agreeing means: [3, (-1 - 4) / 2, (0.5 + 1) / 2, (2 + 0.1) / 2]
    torch.testing.assert_close(merged["w"], BASE["w"] + torch.tensor([3.0, -2.5, 0.75, 1.05]))


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (dict(method="ties"), "density must be in (0, 1]"),
        (dict(method="dare_linear", density=0.0), "density must be in (0, 1]"),
        (dict(method="task_arithmetic", density=0.5), "takes no density"),
        (dict(method="slerp"), "expected one of task_arithmetic, ties, dare_linear, dare_ties"),
    ],
)
def test_settings_are_checked(settings, words):
    with pytest.raises(XstiltsError, match=words.replace("(", r"\(").replace("]", r"\]")):
        MergeSettings(**settings)


def test_only_models_of_the_same_base_merge():
    with pytest.raises(XstiltsError, match=r"lacks tensors of the base \(ids\)"):
        merge_states(BASE, [{"w": BASE["w"]}], MergeSettings())
    with pytest.raises(XstiltsError, match=r"w has shape \(5,\), the base \(4,\)"):
        merge_states(BASE, [{"w": torch.zeros(5), "ids": torch.arange(4)}], MergeSettings())
    extra = {**TUNED[0], "pooler": torch.ones(2)}  # more tensors than the base (a saved pooler): ignored
    torch.testing.assert_close(merge_states(BASE, [extra], MergeSettings())["w"], TUNED[0]["w"])
    with pytest.raises(XstiltsError, match="at least one"):
        merge_states(BASE, [], MergeSettings())


def test_merged_tiny_encoders_load_back_and_one_model_merges_to_itself(tmp_path, tiny_encoder_dir):
    from transformers import AutoModel

    from xstilts.train.modeling import load_encoder

    base = load_encoder(tiny_encoder_dir)
    tuned = []
    for seed in (1, 2):
        model = load_encoder(tiny_encoder_dir)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            for parameter in model.parameters():
                parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
        tuned.append(model.state_dict())
    merged = merge_states(base.state_dict(), tuned, MergeSettings("ties", weight=1.0, density=0.2))
    base.load_state_dict(merged)
    base.save_pretrained(tmp_path / "merged", safe_serialization=True)
    loaded = AutoModel.from_pretrained(tmp_path / "merged")
    for key, value in merged.items():
        if key in loaded.state_dict():
            torch.testing.assert_close(loaded.state_dict()[key], value)
    itself = merge_states(base.state_dict(), tuned[:1], MergeSettings("task_arithmetic", weight=1.0))
    for key, value in tuned[0].items():
        torch.testing.assert_close(itself[key], value)
