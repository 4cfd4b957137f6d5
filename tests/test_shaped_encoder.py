"""Real shapes offline: a tokenizer with XLM-R's vocabulary size and special ids, trained on real text, and an
encoder of a real model's shapes with random weights that loads with AutoModel and runs on its ids."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from xstilts.cli import main
from xstilts.demo.benchmark import corpus_sentences
from xstilts.demo.shaped import TRAINED_PIECES, build_shaped_encoder, shaped_tokenizer, text_lines
from xstilts.study.price import KNOWN_SHAPES, EncoderShape, encoder_shape

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
XLMR = 250_002


def test_the_tokenizer_has_xlm_rs_size_and_ids_and_never_emits_a_filler():
    tokenizer = shaped_tokenizer(corpus_sentences(300), XLMR)
    assert len(tokenizer) == XLMR
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.mask_token_id == XLMR - 1
    ids = tokenizer("The farmer sees a red bird.", "Where is the bird?")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and max(ids) < TRAINED_PIECES, "text never reaches the filler pieces"


@pytest.mark.skipif(not (REAL / "xnli").is_dir(), reason="../shared/data/real is not beside the checkout")
def test_the_tokenizer_learns_from_the_real_samples_in_fifteen_languages():
    files = sorted((REAL / "xnli").glob("dev-*.tsv"))
    tokenizer = shaped_tokenizer(text_lines(files, limit=6000), XLMR)
    assert len(tokenizer) == XLMR and tokenizer.mask_token_id == XLMR - 1
    for path in files:  # every language's text maps to learnt pieces, and decodes back
        line = path.read_text(encoding="utf-8").splitlines()[0].split("\t")[0]
        encoded = tokenizer(line, add_special_tokens=False)["input_ids"]
        assert max(encoded) < TRAINED_PIECES, path.name
        normalized = unicodedata.normalize("NFKC", line)  # the tokenizer's normalizer, as XLM-R's
        assert tokenizer.decode(encoded).replace(" ", "") == normalized.replace(" ", ""), path.name


def test_a_shaped_encoder_loads_with_automodel_and_has_the_vocabulary_rows(tmp_path):
    shape = EncoderShape(vocab=XLMR, hidden=16, layers=2, intermediate=32, heads=2)  # the real vocabulary, narrow
    directory = build_shaped_encoder(tmp_path / "enc", shape, corpus_sentences(200))
    model = AutoModel.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert model.get_input_embeddings().weight.shape == (XLMR, 16) and len(tokenizer) == XLMR
    assert encoder_shape(str(directory)) == shape
    batch = tokenizer(["<mask> is here"], return_tensors="pt")
    assert batch["input_ids"][0, 1] == XLMR - 1
    with torch.no_grad():
        assert model(**batch).last_hidden_state.shape == (1, batch["input_ids"].shape[1], 16)


def test_the_cli_names_a_shape_it_does_not_know(tmp_path, capsys):
    assert main(["shaped-encoder", "--like", "gpt-7", "-o", str(tmp_path / "x")]) == 2
    assert "--like 'gpt-7': expected one of" in capsys.readouterr().err
    assert set(KNOWN_SHAPES) >= {"xlm-roberta-large", "xlm-roberta-base"}
