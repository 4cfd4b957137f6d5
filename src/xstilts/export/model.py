"""Models others can load: a fine-tuned target of a run as a plain Hugging Face model directory.

xstilts keeps a target's head beside its encoder under its own names (`heads.safetensors`). `export_model`
maps the head onto the standard head of the matching `AutoModelFor...` class (RoBERTa-style
`classifier.dense/out_proj`, or BERT-style `pooler.dense` + `classifier`; `classifier` for tagging;
`qa_outputs` for QA), merges LoRA chains into the weights, and checks on sample inputs that the exported
model computes the same logits as xstilts' own before anything is written. A model card (README.md)
records the chain, the settings and the dev/test scores per language.

The export is written into a folder of its own beside the destination and renamed over it when complete, so an
interrupted or concurrent export never leaves half a model under the destination's name, and a destination that
xstilts did not write is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from xstilts.errors import RunError, XstiltsError
from xstilts.files import writing
from xstilts.rundir.runs import RunDirectory
from xstilts.rundir.stage_directory import inspect_stage_dir
from xstilts.tasks.registry import TaskSpec
from xstilts.train.modeling import save_clean_tokenizer

PIPELINE_TAGS = {
    "classification": "text-classification",
    "tagging": "token-classification",
    "qa": "question-answering",
    "multiple_choice": "multiple-choice",
}


@dataclass
class ExportedModel:
    directory: Path
    target: str
    chain_label: str
    kind: str
    max_logit_difference: float  # exported model against xstilts' own, on sample inputs


def export_model(
    run_dir: str | Path,
    chain_label: str,
    target: str,
    output_dir: str | Path,
    push_to_hub: str | None = None,
) -> ExportedModel:
    """Write the target `target` fine-tuned after chain `chain_label` of a run as a Hugging Face model directory."""
    from xstilts import __version__
    from xstilts.config import load_config
    from xstilts.train.adapters import load_target_model

    run = RunDirectory(run_dir)
    run.check_contained()
    rows = _rows_of(run, chain_label, target)
    stage_identity = rows[0]["target_stage"]
    config = load_config(run.config_file, require_data=False)
    spec = config.registry().get(target)
    if spec.kind not in PIPELINE_TAGS:
        raise XstiltsError(f"target {target}: {spec.kind} targets have no fine-tuned head to export")
    stage_dir = run.store.stage_dir(stage_identity, target)
    if inspect_stage_dir(stage_dir).status == "pruned":
        raise XstiltsError(
            f"{stage_dir}: the model's weights were pruned (keep: needed); run the study again to export"
        )
    model, tokenizer = load_target_model(stage_dir, spec)
    exported, difference = to_hf_model(model, spec, tokenizer)
    record = run.store.stage(stage_identity, target).read_record(f"target {target} after {chain_label}")
    card = model_card(spec, rows, record, config, __version__)

    destination = Path(output_dir)
    with _written_aside(destination) as scratch:
        exported.save_pretrained(scratch, safe_serialization=True)
        save_clean_tokenizer(tokenizer, scratch)
        (scratch / "README.md").write_text(card, encoding="utf-8")
    if push_to_hub:
        _push(destination, push_to_hub, f"{target} after {chain_label} (xstilts)")
    return ExportedModel(destination, target, chain_label, spec.kind, difference)


@contextlib.contextmanager
def _written_aside(destination: Path) -> Iterator[Path]:
    """A fresh folder beside `destination` to write the export into, renamed over it when the block succeeds.

    An interrupted or failed export leaves `destination` as it was and removes its own folder; two exports to one
    destination at once each write their own folder, and the last rename wins whole. An existing destination is
    replaced only when it is an earlier export (`is_export`): a folder xstilts did not write is never deleted.
    """
    if destination.exists() and not is_export(destination) and any(destination.iterdir()):
        raise XstiltsError(
            f"{destination} exists and is not a model xstilts exported (no xstilts model card in it); "
            "choose another --output-dir, or remove it yourself"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.exporting-"))
    try:
        with writing(scratch):
            yield scratch
        _replace_folder(scratch, destination)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _replace_folder(new: Path, destination: Path) -> None:
    """Rename `new` to `destination`, moving an existing destination aside first (and deleting it after). Another
    export may move or fill the destination meanwhile: then the move is tried again."""
    aside = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.old-"))
    try:
        for attempt in range(20):
            try:
                os.replace(new, destination)  # onto nothing (or an empty folder) only
                return
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            with contextlib.suppress(FileNotFoundError):  # another export may have moved it already
                os.replace(destination, aside / f"model-{attempt}")
        raise RunError(f"{destination}: another process kept writing there during the export; export again")
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def is_export(directory: Path) -> bool:
    """A folder `export_model` wrote: its README.md is a model card whose front matter tags it `xstilts`."""
    card = Path(directory) / "README.md"
    try:
        text = card.read_text(encoding="utf-8") if card.is_file() and not card.is_symlink() else ""
        front = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") and text.count("---") >= 2 else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(front, dict) and "xstilts" in (front.get("tags") or [])


def _rows_of(run: RunDirectory, chain_label: str, target: str) -> list[dict[str, Any]]:
    """The result rows of one fine-tuned model: the target after that chain (labels name the mode and seed)."""
    rows = [row for row in run.result_rows() if row["target"] == target and row.get("target_stage")]
    if not rows:
        targets = sorted({row["target"] for row in run.result_rows() if row.get("target_stage")})
        raise XstiltsError(
            f"{run.root}: no fine-tuned target {target!r}; fine-tuned targets: {', '.join(targets) or 'none'}"
        )
    chosen = [row for row in rows if row["chain_label"] == chain_label]
    if not chosen:
        labels = sorted({row["chain_label"] for row in rows})
        raise XstiltsError(f"{target}: no chain {chain_label!r} in {run.root}; chains: {', '.join(labels)}")
    if len({row["target_stage"] for row in chosen}) > 1:  # merged reports keep such runs apart; a run never has them
        raise XstiltsError(f"{chain_label}: several {target} models carry this label in {run.root}")
    return chosen


def to_hf_model(model: nn.Module, spec: TaskSpec, tokenizer: Any) -> tuple[nn.Module, float]:
    """The `AutoModelFor...` equivalent of xstilts' target model, checked to compute the same logits."""
    from transformers import (
        AutoModelForMultipleChoice,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    auto = {
        "classification": AutoModelForSequenceClassification,
        "tagging": AutoModelForTokenClassification,
        "qa": AutoModelForQuestionAnswering,
        "multiple_choice": AutoModelForMultipleChoice,
    }[spec.kind]
    encoder = model.encoder
    if hasattr(encoder, "merge_and_unload"):  # LoRA chains: the adapters merged into the weights
        encoder = copy.deepcopy(encoder).merge_and_unload()
    config = copy.deepcopy(encoder.config)
    config.architectures = None
    if spec.kind in ("classification", "tagging"):
        config.num_labels = len(spec.labels)
        config.id2label = dict(enumerate(spec.labels))
        config.label2id = {label: index for index, label in enumerate(spec.labels)}
    elif spec.kind == "qa":
        config.num_labels = 2
    try:
        exported = auto.from_config(config)
    except ValueError as error:
        raise XstiltsError(f"{config.model_type} encoders have no {auto.__name__} in transformers: {error}") from None
    prefix = exported.base_model_prefix
    state = {f"{prefix}.{key}": value for key, value in encoder.state_dict().items()}
    head = model.heads[model.head_of[spec.name]]
    state.update(_head_state(spec.kind, head, set(exported.state_dict()), prefix, config.model_type))
    result = exported.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise XstiltsError(
            f"target {spec.name}: the encoder does not map onto {type(exported).__name__} (missing "
            f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}); chain modes with bottleneck adapters "
            "(adapter-stacked) cannot be exported as a plain Hugging Face model"
        )
    difference = _max_logit_difference(model, exported.eval(), spec, tokenizer)
    if not difference < 1e-3:
        raise XstiltsError(
            f"target {spec.name}: the exported {type(exported).__name__} differs from xstilts' model by {difference:.2e} "
            "on sample inputs; nothing was written"
        )
    return exported, difference


def _head_state(kind: str, head: nn.Module, keys: set[str], prefix: str, model_type: str) -> dict[str, torch.Tensor]:
    """xstilts' head weights under the standard head's names of the Auto class."""
    weights = {name: value.detach().clone() for name, value in head.state_dict().items()}

    def named(mapping: dict[str, str]) -> dict[str, torch.Tensor]:
        """{standard layer: xstilts layer} -> their weights and biases under the standard names."""
        return {
            f"{to}.{part}": weights[f"{source}.{part}"] for to, source in mapping.items() for part in ("weight", "bias")
        }

    if kind == "qa" and "qa_outputs.weight" in keys:
        return named({"qa_outputs": "out_proj"})
    if kind == "tagging" and "classifier.weight" in keys:
        return named({"classifier": "out_proj"})
    if kind == "classification" and "classifier.dense.weight" in keys:  # RoBERTa family: the same head
        return named({"classifier.dense": "dense", "classifier.out_proj": "out_proj"})
    if kind in ("classification", "multiple_choice") and {"classifier.weight", f"{prefix}.pooler.dense.weight"} <= keys:
        # BERT style: pooler (dense + tanh on the first token), dropout, classifier: the same computation
        return named({f"{prefix}.pooler.dense": "dense", "classifier": "out_proj"})
    raise XstiltsError(f"no known mapping of xstilts' {kind} head onto the {model_type} Auto model's head")


def _sample_batch(tokenizer: Any, spec: TaskSpec) -> dict[str, torch.Tensor]:
    """Two short inputs of different lengths (padding included), shaped as the task kind takes them."""
    texts = ["A short sentence to compare the two models on.", "Another, longer one: it has more words than the first."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    batch = {key: value for key, value in batch.items() if key in ("input_ids", "attention_mask", "token_type_ids")}
    if spec.kind == "multiple_choice":
        choices = int(spec.num_choices or 2)
        batch = {key: value.unsqueeze(1).expand(-1, choices, -1).contiguous() for key, value in batch.items()}
    return batch


@torch.no_grad()
def _max_logit_difference(model: nn.Module, exported: nn.Module, spec: TaskSpec, tokenizer: Any) -> float:
    batch = _sample_batch(tokenizer, spec)
    model.eval()
    ours = model(spec.name, batch)
    output = exported(**batch)
    theirs = torch.stack([output.start_logits, output.end_logits], dim=-1) if spec.kind == "qa" else output.logits
    if spec.kind in ("tagging", "qa"):  # padding positions are never read
        mask = batch["attention_mask"].bool()
        ours, theirs = ours[mask], theirs[mask]
    return float((ours.float() - theirs.float()).abs().max())


def model_card(spec: TaskSpec, rows: list[dict[str, Any]], record: dict[str, Any], config: Any, version: str) -> str:
    """README.md of an exported model: what it is, how it was made, how well it transfers (dev and test)."""
    chain = record["chain"]
    metric = rows[0]["metric"]
    languages = sorted({row["language"] for row in rows})
    scores = {(row["split"], row["language"]): row["score"] for row in rows}
    iso = [lang for lang in languages if len(lang) in (2, 3) and lang.isalpha()]
    header = {
        "library_name": "transformers",
        "pipeline_tag": PIPELINE_TAGS[spec.kind],
        "tags": ["xstilts", "x-stilts", "cross-lingual-transfer", "zero-shot"],
    }
    if iso:
        header["language"] = iso
    if not Path(config.encoder).is_absolute():
        header["base_model"] = config.encoder
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {spec.name} after {' → '.join(chain) if chain else 'no intermediate task'} (xstilts)",
        "",
        f"`{config.encoder}` trained in English on the intermediate tasks "
        f"{', '.join(f'`{task}`' for task in chain) or '(none: k = 0)'} one after another, then fine-tuned on "
        f"English `{spec.name}` ({spec.kind}) and evaluated zero-shot in {len(languages)} languages. Exported by "
        f"xstilts {version} from the run `{config.name}` (chain `{rows[0]['chain_label']}`, seed {record['seed']}, "
        f"chain mode {record['mode']}).",
        "",
        f"## Zero-shot scores ({metric})",
        "",
        "| language | dev | test |",
        "|---|---|---|",
    ]
    for language in languages:
        cells = [scores.get((split, language)) for split in ("dev", "test")]
        lines.append(f"| {language} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells) + " |")
    english = record["dev_metrics"]
    lines += [
        "",
        "English dev of the fine-tune: " + ", ".join(f"{k} {v:.2f}" for k, v in english.items()),
        "",
        "## Training settings of the fine-tune",
        "",
        "```yaml",
        yaml.safe_dump(record["settings"], sort_keys=False).strip(),
        "```",
        "",
        "## Use",
        "",
        "```python",
        *_usage(spec.kind),
        "```",
        "",
        "The pooler of the encoder (if it has one) is not trained by xstilts.",
        "",
    ]
    return "\n".join(lines)


def _usage(kind: str) -> list[str]:
    """How to load the export (transformers 5 has no question-answering or multiple-choice pipeline)."""
    if kind in ("classification", "tagging"):
        return [
            "from transformers import pipeline",
            "",
            f'model = pipeline("{PIPELINE_TAGS[kind]}", model="PATH_OR_REPO")',
        ]
    auto = "AutoModelForQuestionAnswering" if kind == "qa" else "AutoModelForMultipleChoice"
    return [
        f"from transformers import {auto}, AutoTokenizer",
        "",
        f'model = {auto}.from_pretrained("PATH_OR_REPO")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
    ]


def _push(directory: Path, repo: str, message: str) -> None:
    """Upload the exported directory to the Hugging Face hub (needs network and a token)."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(directory), repo_id=repo, commit_message=message)
    except Exception as error:  # noqa: BLE001 - network, authentication, permissions: one line for the user
        raise XstiltsError(f"--push-to-hub {repo}: {type(error).__name__}: {error}") from None
