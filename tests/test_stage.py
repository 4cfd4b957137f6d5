"""Stages on a tiny model for a few steps: the saved encoder round trip, heads, determinism, the loop."""

from __future__ import annotations

import json

import pytest
import torch
from fast_training import FAST as TWO_STEPS
from safetensors.torch import load_file

from xstilts.rundir.layout import ENCODER_DIR, HEADS_FILE
from xstilts.rundir.store import StageStore
from xstilts.runtime.device import get_accelerator
from xstilts.study.plan import ChainPrefix, stage_request
from xstilts.study.stage import run_stage
from xstilts.train.adapters import EncoderRecipe
from xstilts.train.loop import make_optimizer
from xstilts.train.modeling import MultiTaskModel, load_encoder

pytestmark = pytest.mark.stage

FAST = {**TWO_STEPS, "max_steps": 4}


def request_for(registry, task: str, parent: str, store: StageStore, role: str = "intermediate", **overrides):
    base = ChainPrefix(0, (), "base", None, recipe=EncoderRecipe(parent))
    return stage_request(role, registry.get(task), [{**FAST, **overrides}], 0, base)


@pytest.mark.parametrize("task", ["demo_paraphrase", "demo_squad2", "demo_swag", "demo_pos"])
def test_stage_of_each_kind_saves_encoder_heads_and_record(tmp_path, tiny_encoder_dir, demo_registry, task):
    store = StageStore(tmp_path)
    request = request_for(demo_registry, task, str(tiny_encoder_dir), store)
    record = run_stage(request, store, progress=False)
    stage_dir = store.stage_dir(request.identity, task)
    assert (stage_dir / ENCODER_DIR / "model.safetensors").is_file()
    assert (stage_dir / ENCODER_DIR / "config.json").is_file()
    assert (stage_dir / ENCODER_DIR / "tokenizer.json").is_file()
    assert json.loads((stage_dir / "stage.json").read_text()) == json.loads(json.dumps(record))
    assert record["steps"] == 4 and record["task"] == task and record["primary_metric"] in record["dev_metrics"]
    assert {key.split(".")[0] for key in load_file(str(stage_dir / HEADS_FILE))} == {task}
    assert not list(tmp_path.glob(".partial-*")), "scratch directories are renamed into place"


def test_next_stage_loads_the_encoder_only(tmp_path, tiny_encoder_dir, demo_registry):
    store = StageStore(tmp_path)
    first = request_for(demo_registry, "demo_paraphrase", str(tiny_encoder_dir), store)
    run_stage(first, store, progress=False)
    stage_dir = store.stage_dir(first.identity, "demo_paraphrase")

    trained = load_encoder(stage_dir / ENCODER_DIR)
    original = load_encoder(tiny_encoder_dir)
    changed = [name for name, p in trained.state_dict().items() if not torch.equal(p, original.state_dict()[name])]
    assert changed, "the saved encoder carries the stage's training"
    assert not any("pooler" in name for name in trained.state_dict())

    saved_head = {k.split(".", 1)[1]: v for k, v in load_file(str(stage_dir / HEADS_FILE)).items()}
    spec = demo_registry.get("demo_paraphrase")
    torch.manual_seed(123)
    fresh = MultiTaskModel(trained, {spec.name: spec})
    assert not torch.equal(fresh.heads[spec.name].out_proj.weight, saved_head["out_proj.weight"]), (
        "heads are not carried over"
    )

    # Explicit opt-in: the next stage of the same task starts from the saved head.
    second = stage_request(
        "intermediate",
        spec,
        [{**FAST, "learning_rate": 1e-9, "max_steps": 1}],
        0,
        ChainPrefix(1, ("demo_paraphrase",), first.identity, first, recipe=EncoderRecipe(str(stage_dir / ENCODER_DIR))),
        parent_heads=stage_dir / HEADS_FILE,
    )
    record = run_stage(second, store, progress=False)
    assert record["reused_heads"] == ["demo_paraphrase"]
    reused = load_file(str(store.stage_dir(second.identity, "demo_paraphrase") / HEADS_FILE))
    assert torch.allclose(reused["demo_paraphrase.out_proj.weight"], saved_head["out_proj.weight"], atol=1e-6)


def test_stage_is_deterministic_on_cpu_and_skipped_when_done(tmp_path, tiny_encoder_dir, demo_registry):
    weights = []
    for name in ("a", "b"):
        store = StageStore(tmp_path / name)
        request = request_for(demo_registry, "demo_nli", str(tiny_encoder_dir), store, role="target")
        record = run_stage(request, store, progress=False)
        weights.append(
            load_file(str(store.stage_dir(request.identity, "demo_nli") / ENCODER_DIR / "model.safetensors"))
        )
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # Same request again: the completion record is returned and nothing trains.
    assert run_stage(request, store, progress=False) == json.loads(
        (store.stage_dir(request.identity, "demo_nli") / "stage.json").read_text()
    )
    assert record["history"] == run_stage(request, store, progress=False)["history"]


def test_identity_changes_with_settings_and_seed(tmp_path, tiny_encoder_dir, demo_registry):
    store = StageStore(tmp_path)
    base = request_for(demo_registry, "demo_nli", str(tiny_encoder_dir), store)
    assert request_for(demo_registry, "demo_nli", str(tiny_encoder_dir), store).identity == base.identity
    assert (
        request_for(demo_registry, "demo_nli", str(tiny_encoder_dir), store, learning_rate=2e-3).identity
        != base.identity
    )
    other_seed = stage_request(
        "intermediate",
        demo_registry.get("demo_nli"),
        [FAST],
        1,
        ChainPrefix(0, (), "base", None, recipe=EncoderRecipe(str(tiny_encoder_dir))),
    )
    assert other_seed.identity != base.identity


def test_no_weight_decay_on_bias_and_layer_norm(tiny_encoder_dir, demo_registry):
    from xstilts.settings import TrainingSettings

    spec = demo_registry.get("demo_nli")
    model = MultiTaskModel(load_encoder(tiny_encoder_dir), {spec.name: spec})
    decayed, plain = make_optimizer(model, TrainingSettings(), torch.device("cpu")).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decayed["params"])
    assert {names[id(p)] for p in plain["params"]} == {
        n for n in names.values() if n.endswith("bias") or "LayerNorm" in n
    }


def test_gradient_accumulation_matches_the_full_batch(tiny_encoder_dir, demo_registry, tiny_tokenizer):
    """Two micro-batches of 4 give the same update as one batch of 8 (dropout off).

    A large Adam epsilon makes the first update proportional to the gradient instead of its sign, so
    a wrongly scaled accumulated gradient shows up in the weights.
    """
    from xstilts.data.examples import build_features, load_examples
    from xstilts.settings import TrainingSettings
    from xstilts.train.loop import train

    spec = demo_registry.get("demo_nli")
    examples = load_examples(spec, "train", "en", limit=8)
    results = []
    torch.manual_seed(0)
    initial = MultiTaskModel(load_encoder(tiny_encoder_dir), {spec.name: spec}).state_dict()
    for micro in (8, 4):
        settings = TrainingSettings(
            batch_size=8,
            micro_batch_size=micro,
            max_steps=1,
            learning_rate=1.0,
            adam_epsilon=1.0,
            weight_decay=0.0,
            warmup_ratio=0,
            eval_every_steps=100,
        )
        torch.manual_seed(0)
        model = MultiTaskModel(load_encoder(tiny_encoder_dir), {spec.name: spec})
        model.encoder.config.hidden_dropout_prob = 0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        features = build_features(spec, examples, tiny_tokenizer, settings, training=True)
        train(
            model,
            {spec.name: features},
            settings,
            get_accelerator(),
            tiny_tokenizer.pad_token_id,
            lambda m: 0.0,
            seed=0,
            progress=False,
        )
        results.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.allclose(results[0][k], results[1][k], atol=1e-5) for k in results[0])
    moved = max((results[0][k] - initial[k]).abs().max().item() for k in initial)
    assert moved > 1e-3, "the update is large enough for a wrong scale to be visible"


def test_stages_with_different_precision_run_in_one_process(tmp_path, tiny_encoder_dir, demo_registry):
    """bf16 autocast (the GPU default) runs on CPU too, and precision may differ between stages."""
    store = StageStore(tmp_path)
    records = [
        run_stage(
            request_for(demo_registry, "demo_nli", str(tiny_encoder_dir), store, precision=p), store, progress=False
        )
        for p in ("bf16", "fp32")
    ]
    assert [r["environment"]["precision"] for r in records] == ["bf16", "fp32"]
    assert all(r["steps"] == 4 for r in records)


def test_a_killed_stage_resumes_to_bit_identical_weights(tmp_path, tiny_encoder_dir, demo_registry, monkeypatch):
    """Interrupt training after a checkpoint, start again: same weights, history and dev scores as without."""
    import xstilts.train.loop as training

    overrides = {"max_steps": 9, "eval_every_steps": 3, "log_every_steps": 2}
    uninterrupted_store = StageStore(tmp_path / "a")
    request = request_for(
        demo_registry, "demo_nli", str(tiny_encoder_dir), uninterrupted_store, role="target", **overrides
    )
    uninterrupted = run_stage(request, uninterrupted_store, progress=False, checkpoint_every_steps=2)

    store = StageStore(tmp_path / "b")
    original_save = training.Checkpointer.save
    saves = []

    def save_then_die(self, *args, **kwargs):
        original_save(self, *args, **kwargs)
        saves.append(args[3]["step"])
        if len(saves) == 2:  # killed right after the checkpoint of step 4
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_stage(request, store, progress=False, checkpoint_every_steps=2)
    assert store.record(request.identity, "demo_nli") is None and (tmp_path / "b" / ".checkpoints").is_dir()
    monkeypatch.setattr(training.Checkpointer, "save", original_save)
    resumed = run_stage(request, store, progress=False, checkpoint_every_steps=2)

    assert saves == [2, 4]
    assert resumed["history"] == uninterrupted["history"] and resumed["dev_metrics"] == uninterrupted["dev_metrics"]
    weights = [
        load_file(str(s.stage_dir(request.identity, "demo_nli") / ENCODER_DIR / "model.safetensors"))
        for s in (uninterrupted_store, store)
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not (tmp_path / "b" / ".checkpoints" / f"{request.identity}-demo_nli").exists(), (
        "the checkpoint is removed once the stage is done"
    )


def test_length_grouped_batches_cover_each_epoch_once_with_less_padding():
    import itertools

    import numpy as np

    from xstilts.train.loop import shuffled_batches

    lengths = np.random.default_rng(0).integers(5, 200, size=1000)
    grouped = list(itertools.islice(shuffled_batches(1000, 8, 3, lengths), 125 * 2))
    plain = list(itertools.islice(shuffled_batches(1000, 8, 3), 125))
    for epoch in (grouped[:125], grouped[125:]):
        assert sorted(i for batch in epoch for i in batch) == list(range(1000)), "each feature once per epoch"
    assert grouped[:125] != grouped[125:], "a fresh order every epoch"
    assert grouped == list(itertools.islice(shuffled_batches(1000, 8, 3, lengths), 250)), "seeded"

    def padded(batches):
        return sum(len(b) * max(lengths[b]) for b in batches)

    assert padded(grouped[:125]) < 0.7 * padded(plain), "similar lengths share a batch"
    first_lengths = [max(lengths[b]) for b in grouped[:125]]
    assert first_lengths != sorted(first_lengths, reverse=True), "batches are shuffled: no length curriculum"


def test_cpu_training_uses_the_uniform_draw_dropout_and_puts_the_model_back(
    tiny_encoder_dir, demo_registry, tiny_tokenizer
):
    from xstilts.data.examples import build_features, load_examples
    from xstilts.runtime.cpu_dropout import ATTENTION, CPUDropout
    from xstilts.settings import TrainingSettings
    from xstilts.train.loop import train

    spec = demo_registry.get("demo_nli")
    features = build_features(
        spec, load_examples(spec, "train", "en", limit=8), tiny_tokenizer, TrainingSettings(), training=True
    )
    model = MultiTaskModel(load_encoder(tiny_encoder_dir), {spec.name: spec})
    dropouts = [module for module in model.modules() if type(module) is torch.nn.Dropout]
    seen = {}

    def validate(trained: MultiTaskModel) -> float:  # called inside the training loop
        seen["attention"] = trained.encoder.config._attn_implementation
        seen["dropouts"] = sum(isinstance(module, CPUDropout) for module in trained.modules())
        return 0.0

    settings = TrainingSettings(batch_size=4, max_steps=2, eval_every_steps=2)
    train(
        model,
        {spec.name: features},
        settings,
        get_accelerator(),
        tiny_tokenizer.pad_token_id,
        validate,
        seed=0,
        progress=False,
    )
    assert seen == {"attention": ATTENTION, "dropouts": len(dropouts)}
    assert model.encoder.config._attn_implementation == "sdpa"
    assert [module for module in model.modules() if type(module) is torch.nn.Dropout] == dropouts


def test_a_finished_stage_leaves_no_model_or_optimizer_state_behind(tmp_path, tiny_encoder_dir, demo_registry):
    """The process's Accelerator must not keep each stage's model and optimizer: a study of many stages in one
    process would otherwise hold every stage's weights, gradients and Adam moments (found by the rehearsal of the
    paper's study, which ran out of 24 GB within four XLM-R Large-shaped stages)."""
    import gc

    def live_multitask_models() -> int:  # without a collection: dropped references free a model at once
        return sum(1 for o in gc.get_objects() if isinstance(o, MultiTaskModel))

    store = StageStore(tmp_path)
    before = live_multitask_models()
    for learning_rate in (1e-3, 2e-3, 3e-3):  # three distinct stages
        request = request_for(
            demo_registry, "demo_paraphrase", str(tiny_encoder_dir), store, learning_rate=learning_rate
        )
        run_stage(request, store, progress=False)
    assert live_multitask_models() <= before  # an earlier test's garbage may be collected meanwhile
    assert not get_accelerator()._models and not get_accelerator()._optimizers
