"""Every plug-in registry agrees with what the component definitions let a scenario choose,
and every registry has a conformance kit of the one shape that covers each of its entries.

A scenario picks a DOPF algorithm or a payment rule by a parameter whose ``choices`` the
component definition declares; `gridsim validate` accepts exactly those. A registered plug-in
missing from the choices cannot be picked, and a choice missing from the registry passes
validation and fails only when the federate starts. Estimators are federate types of their
own (``type: wls``), so each one needs a bundled type of its name.
"""

from __future__ import annotations

import inspect

import pytest

from gridsim.components import builtin_types, load_definition
from gridsim.federates.dopf import conformance as dopf_kit
from gridsim.federates.dopf.algorithms import ALGORITHMS
from gridsim.federates.market import conformance as market_kit
from gridsim.federates.market.payments import RULES
from gridsim.federates.wls import conformance as wls_kit
from gridsim.federates.wls.registry import ESTIMATORS

KITS = {"dopf": (dopf_kit, ALGORITHMS), "payments": (market_kit, RULES),
        "estimators": (wls_kit, ESTIMATORS)}
SHAPE = ("Case", "HAND_MADE", "random_cases", "names", "check_case", "check", "run_kit")
"""What every kit exposes (module doc of each `conformance`)."""


def parameter(federate_type: str, name: str):
    definition = load_definition(builtin_types()[federate_type])
    found = definition.parameter(name)
    assert found is not None, f"{federate_type} declares no parameter {name!r}"
    return found


def test_dopf_algorithm_choices_are_the_registry():
    algorithm = parameter("dopf", "algorithm")
    assert sorted(algorithm.choices) == sorted(ALGORITHMS)
    assert algorithm.default in ALGORITHMS


@pytest.mark.parametrize("federate_type", ["market", "regulator"])
def test_payment_rule_choices_are_the_registry(federate_type):
    rule = parameter(federate_type, "payment_rule")
    assert sorted(rule.choices) == sorted(RULES)
    assert rule.default in RULES


def test_every_estimator_is_a_bundled_federate_type():
    """No definition offers estimators as choices: each is a type (``type: wls``), whose
    definition loads and declares the estimator's outputs."""
    for name in ESTIMATORS:
        assert name in builtin_types()
        outputs = {port.port_id for port in load_definition(builtin_types()[name])
                   .dynamic_outputs}
        assert {"voltages_magnitude", "voltages_angle", "diagnostics"} <= outputs


@pytest.mark.parametrize("family", sorted(KITS))
def test_each_registry_entry_is_named_by_its_key(family):
    _, registry = KITS[family]
    assert registry
    for name, cls in registry.items():
        assert cls.name == name


@pytest.mark.parametrize("family", sorted(KITS))
def test_each_kit_has_the_one_shape_and_covers_its_registry(family):
    kit, registry = KITS[family]
    missing = [attr for attr in SHAPE if not hasattr(kit, attr)]
    assert missing == []
    assert kit.names() == sorted(registry)
    assert kit.HAND_MADE and all(callable(build) for build in kit.HAND_MADE)
    assert all(isinstance(build(), kit.Case) for build in kit.HAND_MADE)
    assert len(inspect.signature(kit.check_case).parameters) == 2
    check = inspect.signature(kit.check).parameters
    assert list(check)[1:] == ["cases"] and check["cases"].default is None
    assert not inspect.signature(kit.run_kit).parameters
