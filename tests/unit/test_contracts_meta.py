"""Meta-tests keeping the contract honest: every hookspec documents the four questions, and
every driver ABC method matches a hookspec by name and parameter names."""

import inspect

import pytest

from warden_framework import hookspecs
from warden_framework.drivers import BASES
from warden_framework.plugins import hook_names

LABELS = ("Called:", "May assume:", "Returns:", "On failure:")


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_docstring_answers_four_questions(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    missing = [label for label in LABELS if label not in doc]
    assert not missing, f"{name} docstring lacks {missing}"


@pytest.mark.parametrize("subsystem", sorted(BASES))
def test_driver_abc_methods_match_hookspecs(subsystem):
    base = BASES[subsystem]
    for name in base.__abstractmethods__ - {"check_host"}:
        spec = getattr(hookspecs, name, None)
        assert spec is not None, f"{base.__name__}.{name} has no hookspec"
        spec_params = list(inspect.signature(spec).parameters)
        abc_params = list(inspect.signature(getattr(base, name)).parameters)[1:]
        assert abc_params == spec_params, f"{base.__name__}.{name}{abc_params} != hookspec {spec_params}"
        assert hookspecs.OWNERS[name] == subsystem


def test_every_owned_hook_belongs_to_an_abc():
    """Abstract in its subsystem's base, or (a hook added later) a marked default there, so
    a driver written before it still loads and the hook still has its one owner."""
    for name, subsystem in hookspecs.OWNERS.items():
        base = BASES[subsystem]
        default = getattr(base, name, None)
        assert name in base.__abstractmethods__ or getattr(default, "warden_impl", None), \
            f"{name}: neither abstract nor a marked default in {base.__name__}"
