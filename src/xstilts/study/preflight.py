"""What can be checked about a study before anything is trained, from its config and its encoder's shape alone.

A failure the plan can predict must not wait for the stage that meets it: a retrieval target asking for a
hidden layer the encoder does not have would otherwise fail when it is first evaluated, after every stage
before it has trained. `xstilts run` refuses such a study before it writes anything; `xstilts plan` lists it.
"""

from __future__ import annotations

from xstilts.config import ExperimentConfig
from xstilts.errors import ConfigError, XstiltsError
from xstilts.study.price import EncoderShape, encoder_shape
from xstilts.tasks.registry import TaskRegistry


def shape_problems(config: ExperimentConfig, registry: TaskRegistry, shape: EncoderShape) -> list[str]:
    """Each retrieval target whose embedding layer (explicit, or its preset's at this depth) is not one of the
    encoder's hidden states, named with its config key."""
    problems = []
    for index, target in enumerate(config.targets):
        if registry.get(target.task).trainable:
            continue
        try:
            target.embedding.resolved(shape.layers, target.task)
        except XstiltsError as error:
            problems.append(f"targets[{index}].embedding.layer: {error} ({config.encoder})")
    return problems


def check_before_training(config: ExperimentConfig, registry: TaskRegistry) -> None:
    """Raise a ConfigError listing what the encoder's shape says would fail; nothing when the shape is unknown
    (a hub model not downloaded yet: `run` loads its config first and checks it then)."""
    try:
        shape = encoder_shape(config.encoder)
    except XstiltsError:
        return
    problems = shape_problems(config, registry, shape)
    if problems:
        raise ConfigError(problems)
