"""The uniform-draw dropout used for CPU training: exact attention, right keep rate, nothing left behind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xstilts.runtime.cpu_dropout import (
    ATTENTION,
    RESOLUTION,
    CPUDropout,
    cpu_dropout,
    keep_mask,
    sdpa_with_cpu_dropout,
    uniform_mask_dropout,
)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_dropout_keeps_one_minus_p_and_rescales(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    y = uniform_mask_dropout(x, p)
    dropped = round(p * RESOLUTION) / RESOLUTION
    assert abs(dropped - p) <= 0.5 / RESOLUTION
    assert torch.all((y == 0) | (y == torch.tensor(1.0) / (1 - dropped)))
    kept = (y > 0).float().mean().item()
    assert abs(kept - (1 - p)) < 5 * (p * (1 - p) / 1e6) ** 0.5  # five standard deviations
    assert abs(y.mean().item() - 1) < 5 * (p / (1 - p) / 1e6) ** 0.5, "the expectation is x"
    y.sum().backward()  # the gradient is the same mask and scale
    assert torch.equal(x.grad, y.detach())


def test_every_word_of_a_draw_is_uniform_and_seeded():
    """Each 64-bit draw gives four 16-bit words: all four must be uniform (a draw over [0, 2^63) would leave the
    top word non-negative and keep a quarter of the elements always), and the mask follows the seed."""
    torch.manual_seed(3)
    mask = keep_mask((400_000, 4), 0.5)  # column j: word j of every draw
    rates = mask.float().mean(0)
    assert torch.all((rates - 0.5).abs() < 5 * (0.25 / 400_000) ** 0.5), rates
    torch.manual_seed(3)
    assert torch.equal(keep_mask((400_000, 4), 0.5), mask)
    assert keep_mask((3, 5), 0.2).shape == (3, 5) and keep_mask((7,), 0.2).shape == (7,)


def test_attention_is_the_math_path_with_the_drawn_mask():
    """Same draws, same result as softmax(q k^T * scale, masked) -> dropout -> times v, written out."""
    generator = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(2, 3, 5, 4, generator=generator) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second sequence has two padding positions
    module = nn.Module().train()

    torch.manual_seed(7)
    output, _ = sdpa_with_cpu_dropout(module, query, key, value, mask, dropout=0.25, scaling=0.5)
    torch.manual_seed(7)
    scores = (query @ key.transpose(-1, -2) * 0.5).masked_fill(~mask, float("-inf"))
    probabilities = scores.softmax(-1)
    keep = keep_mask(probabilities.shape, 0.25)
    expected = (probabilities * keep / 0.75) @ value
    torch.testing.assert_close(output, expected.transpose(1, 2), rtol=0, atol=1e-6)
    assert output[1, :, :, :].isfinite().all()

    module.eval()  # outside training it is transformers' SDPA
    plain, _ = sdpa_with_cpu_dropout(module, query, key, value, mask, dropout=0.0, scaling=0.5)
    reference = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.5)
    torch.testing.assert_close(plain, reference.transpose(1, 2))


def test_encoder_under_cpu_dropout(tiny_encoder_dir, tiny_tokenizer):
    """Evaluation is bit-identical; training with a negligible rate matches evaluation (so padding is masked
    exactly as SDPA masks it); afterwards every module and the attention setting are back."""
    from xstilts.tasks.base import collate_padded
    from xstilts.train.modeling import load_encoder

    encoder = load_encoder(tiny_encoder_dir)
    texts = ["the cat sees the dog", "a bird", "the dog sees the bird and the cat sees the dog again"]
    batch = collate_padded(
        [{"input_ids": np.asarray(ids)} for ids in tiny_tokenizer(texts)["input_ids"]], tiny_tokenizer.pad_token_id
    )
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    dropouts = [module for module in encoder.modules() if type(module) is nn.Dropout]
    assert encoder.config._attn_implementation == "sdpa" and dropouts

    encoder.eval()
    with torch.no_grad():
        before = encoder(**inputs).last_hidden_state
        with cpu_dropout(encoder):
            assert encoder.config._attn_implementation == ATTENTION
            assert all(type(module) is not nn.Dropout for module in encoder.modules())
            during = encoder(**inputs).last_hidden_state
    assert torch.equal(before, during)

    for module in dropouts:
        module.p = 1e-9
    encoder.train()
    with cpu_dropout(encoder):
        assert any(isinstance(module, CPUDropout) for module in encoder.modules())
        trained = encoder(**inputs).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(trained[real], before[real], rtol=0, atol=1e-5)

    assert encoder.config._attn_implementation == "sdpa"
    assert [module for module in encoder.modules() if type(module) is nn.Dropout] == dropouts
    assert all(module.training for module in dropouts)
