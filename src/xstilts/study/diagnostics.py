"""Diagnosing every prefix of a run's plan (`diagnostics:` in the config); the measures are in
`xstilts.evaluate.diagnostics`. One record per prefix in `RUN_DIR/diagnostics/`, written once."""

from __future__ import annotations

import logging
import time
from typing import Any

from xstilts.config import ExperimentConfig
from xstilts.evaluate.diagnostics import EarlierStage, diagnose, forgetting, probe_data
from xstilts.metrics.representations import layer_representations
from xstilts.rundir.runs import RunDirectory
from xstilts.runtime.device import get_accelerator, is_main_process
from xstilts.study.plan import ChainPrefix, Plan
from xstilts.tasks.registry import TaskRegistry
from xstilts.train.adapters import build_encoder
from xstilts.train.modeling import load_tokenizer

log = logging.getLogger(__name__)
SUPERVISED_KINDS = ("classification", "multiple_choice", "qa", "tagging")


class PrefixDiagnostics:
    """Reads the probe data once and keeps each diagnosed prefix's representations for its children's drift."""

    def __init__(self, config: ExperimentConfig, registry: TaskRegistry, plan: Plan, run: RunDirectory):
        self.settings, self.plan, self.run = config.diagnostics, plan, run
        targets = [(registry.get(t.task), config.target_languages(t, registry)) for t in config.targets]
        self.data = probe_data(
            targets, self.settings.parallel_dir, self.settings.probe_sentences, self.settings.estimate_examples
        )
        self.tokenizer = load_tokenizer(config.encoder)
        self.representations: dict[str, list[Any] | None] = {}  # prefix identity -> probe-set layer representations

    def write(self, node: ChainPrefix) -> None:
        references = {"pretrained": self.layers_of(self.root_of(node))}
        if node.stage is not None:
            references["parent"] = self.layers_of(self.plan.nodes[node.stage.parent_identity])
        encoder = build_encoder(node.recipe).to(get_accelerator().device)
        started = time.perf_counter()
        record, self.representations[node.identity] = diagnose(
            encoder, self.tokenizer, self.data, references, self.settings.estimators, self.settings.max_length
        )
        if self.settings.forgetting and node.stage is not None:
            record["forgetting"] = forgetting(
                encoder,
                self.tokenizer,
                self.earlier_stages(node),
                self.settings.forgetting_examples,
                self.settings.probe_steps,
                node.seed,
            )
        record["seconds"] = round(time.perf_counter() - started, 2)
        header = {"identity": node.identity, "chain": list(node.tasks), "chain_length": node.chain_length}
        if is_main_process():
            self.run.write_diagnostics(node.identity, {**header, "seed": node.seed, "mode": node.mode, **record})
        log.info("diagnosed %s in %.1f s", node.label, record["seconds"])

    def earlier_stages(self, node: ChainPrefix) -> list[EarlierStage]:
        """The chain's single-task supervised stages up to `node`, whose heads are on disk (not pruned)."""
        ancestors = []
        while node.stage is not None:
            ancestors.append(node)
            node = self.plan.nodes[node.stage.parent_identity]
        stages = []
        for position, ancestor in enumerate(reversed(ancestors), start=1):
            request = ancestor.stage
            if request.mixture is not None or request.spec.kind not in SUPERVISED_KINDS:
                continue  # mixtures and masked LM: no single head to score
            stage = self.run.store.stage(ancestor.identity, request.name)
            if stage.has_heads():
                stages.append(EarlierStage(position, request.spec, stage.path, request.settings))
        return stages

    def root_of(self, node: ChainPrefix) -> ChainPrefix:
        while node.stage is not None:
            node = self.plan.nodes[node.stage.parent_identity]
        return node

    def layers_of(self, node: ChainPrefix) -> list[Any] | None:
        """A prefix's representations: kept from its own diagnosis, or computed from its weights (None if pruned)."""
        if node.identity not in self.representations:
            record = self.run.store.record(node.identity, node.stage.name) if node.stage is not None else {}
            if record is None or record.get("pruned"):
                return None  # keep: needed removed its weights: no drift against it
            encoder = build_encoder(node.recipe).to(get_accelerator().device)
            self.representations[node.identity] = layer_representations(
                encoder, self.tokenizer, self.data.probe_texts, self.settings.max_length
            )
        return self.representations[node.identity]
