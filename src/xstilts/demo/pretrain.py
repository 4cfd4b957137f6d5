"""A tiny XLM-R-architecture encoder pretrained with masked LM on the generated multilingual corpus.

The tokenizer is a SentencePiece-style Unigram model trained on the same corpus with XLM-R's special
tokens and ids (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last). The result is cached by a hash of
everything that determines it, so the demo pretrains once per machine.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch.nn import functional as F
from transformers import (
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    get_linear_schedule_with_warmup,
)

from xstilts.data.cache import cache_root
from xstilts.demo.benchmark import BENCHMARK_VERSION, corpus_sentences
from xstilts.files import write_json_atomic
from xstilts.logs import ProgressLines, progress_bar
from xstilts.rundir.store import content_identity
from xstilts.runtime.cpu_dropout import cpu_dropout
from xstilts.tasks.mlm import mask_tokens
from xstilts.train.loop import shuffled_batches

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
PRETRAIN_RECIPE = 3  # what the settings do not say (3: length-grouped batches, CPU dropout, fused AdamW); cache key


@dataclass(frozen=True)
class PretrainSettings:
    sentences_per_language: int = 6000
    vocab_size: int = 2000
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 256
    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    mask_probability: float = 0.15
    seed: int = 0


def train_tokenizer(sentences: list[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A Unigram tokenizer with XLM-R's special tokens, pair template and character offsets."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    # Split on whitespace first so that "▁" never spans a space: offsets then cover word characters only.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        shrinking_factor=0.75,
        show_progress=False,  # its bars print blank lines into a batch job's log
    )
    tokenizer.train_from_iterator(sentences, trainer)
    tokenizer.add_special_tokens(["<mask>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return xlmr_tokenizer(tokenizer, max_length)


def xlmr_tokenizer(backend: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    """A `tokenizers` model behind transformers' fast tokenizer, with XLM-R's special tokens."""
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )


def pretrain_encoder(
    settings: PretrainSettings = PretrainSettings(), cache_dir: Path | None = None, progress: bool = True
) -> Path:
    """The encoder directory (Hugging Face format), trained now or taken from the cache."""
    identity = content_identity({"benchmark": BENCHMARK_VERSION, "recipe": PRETRAIN_RECIPE, **asdict(settings)})
    root = Path(cache_dir or cache_root())
    target = root / f"demo-encoder-{identity}"
    if target.is_symlink():  # the cache holds what xstilts wrote, nothing it points to
        log.warning("%s is a symbolic link, not the encoder xstilts built; building it again", target)
        target.unlink()
    if (target / "pretraining.json").is_file():
        return target
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    sentences = corpus_sentences(settings.sentences_per_language, seed=settings.seed)
    tokenizer = train_tokenizer(sentences, settings.vocab_size, settings.max_positions - 2)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        intermediate_size=settings.intermediate_size,
        max_position_embeddings=settings.max_positions,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        layer_norm_eps=1e-5,
    )
    model = XLMRobertaForMaskedLM(config)
    encoded = tokenizer(sentences, truncation=True, max_length=settings.max_positions - 2)["input_ids"]
    # the fused AdamW kernel and the uniform-draw CPU dropout of the study's own training: 20% of each step
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.steps // 10, settings.steps)
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    name = "pretraining the demo encoder (masked LM)"
    bar = progress_bar(progress, iterable=range(settings.steps), desc=name, leave=False)
    lines = ProgressLines(name, settings.steps)
    losses = []
    # length-grouped batches, as the study's training draws them: half of each random batch was padding
    batches = shuffled_batches(len(encoded), settings.batch_size, settings.seed, [len(ids) for ids in encoded])
    with cpu_dropout(model):
        for step in bar:
            indices = next(batches)
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in indices]}, return_tensors="pt")
            special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
            inputs, labels = mask_tokens(
                batch["input_ids"],
                ~special,
                tokenizer.mask_token_id,
                (len(SPECIAL_TOKENS), len(tokenizer) - 1),
                settings.mask_probability,
                generator,
            )
            # The vocabulary projection only at masked positions: on a model this small it would otherwise cost
            # as much as the encoder itself.
            hidden = model.roberta(input_ids=inputs, attention_mask=batch["attention_mask"]).last_hidden_state
            selected = labels != -100
            loss = F.cross_entropy(model.lm_head(hidden[selected]), labels[selected])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if step % 50 == 0 or step == settings.steps - 1:
                losses.append((step, loss.item()))
                bar.set_postfix(loss=f"{losses[-1][1]:.3f}")
            if lines.due(step + 1, step % 50 == 0):
                log.info(lines.line(step + 1, f"loss {loss.item():.3f}"))
    scratch = root / f".building-demo-encoder-{identity}-{os.getpid()}"
    if scratch.exists():
        shutil.rmtree(scratch)
    model.roberta.save_pretrained(scratch, safe_serialization=True)
    tokenizer.save_pretrained(scratch)
    record = {
        "settings": asdict(settings),
        "sentences": len(sentences),
        "vocab_size": len(tokenizer),
        "loss_curve": losses,
        "final_mlm_loss": losses[-1][1],
        "final_mlm_perplexity": math.exp(losses[-1][1]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(scratch / "pretraining.json", record)
    if target.exists():
        shutil.rmtree(target)
    os.replace(scratch, target)
    log.info("pretrained the demo encoder in %.0f s (final MLM loss %.2f)", record["seconds"], record["final_mlm_loss"])
    return target
