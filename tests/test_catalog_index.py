"""The catalog index `biaslab list` prints is read from the experiment modules' source without importing them: it
matches the live catalog, picks up a new module with no other edit, and names the module and attribute it cannot
read."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from biaslab import catalog
from biaslab.catalog import INDEX, CatalogSourceError, IndexEntry, index, read_entries
from biaslab.experiments import CATALOG

NEW_MODULE = '''
"""A new experiment: its catalog line comes from this file alone."""

from biaslab.experiments.base import CATALOG, Experiment

NAME = "new-" "experiment"  # implicit concatenation, resolved by the parser
PAPER = "Someone 2031"


def tiny(): ...


class NewExperiment(Experiment):
    name = NAME
    title = (
        "A title over "
        "two lines"
    )
    reference = PAPER + ", Sec. 2"
    presets = {"tiny": tiny, "paper": tiny, "quick": tiny}


CATALOG.add(NAME, NewExperiment())
'''


def test_the_index_lists_every_experiment_with_its_title_reference_and_presets():
    assert list(INDEX) == list(CATALOG), "the index read from source and the imported catalog differ in names or order"
    for name in CATALOG:
        experiment = CATALOG.get(name)
        assert experiment.name == name
        assert INDEX[name] == (experiment.title, experiment.reference, tuple(experiment.presets)), name


def test_the_index_has_the_interface_cli_and_api_unpack():
    name, (title, reference, presets) = next(iter(INDEX.items()))
    assert isinstance(INDEX[name], IndexEntry) and INDEX[name].title == title and presets[0] == "tiny"
    assert index() == INDEX and index() is not index()  # a fresh dict each time: a caller's edit cannot leak


def test_listing_the_catalog_imports_neither_torch_nor_any_experiment():
    code = "import sys; from biaslab.cli import main; main(['list']); print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('biaslab.experiments')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_new_module_in_the_package_is_listed_in_name_order_with_no_other_edit(tmp_path: Path):
    package = _copy_of_experiments(tmp_path)
    (package / "m_new_experiment.py").write_text(NEW_MODULE, encoding="utf-8")  # sorts between loss_ and marginal_
    derived = index(package)
    assert derived["new-experiment"] == ("A title over two lines", "Someone 2031, Sec. 2", ("tiny", "paper", "quick"))
    names = list(derived)
    assert names[names.index("new-experiment") - 1 :][:3] == ["loss-landscape", "new-experiment", "marginal-likelihood"]
    assert {n: e for n, e in derived.items() if n != "new-experiment"} == INDEX


def test_a_helper_module_that_registers_nothing_adds_nothing(tmp_path: Path):
    package = _copy_of_experiments(tmp_path)
    helper = "from biaslab.experiments.base import CATALOG\n\nNAME = 'not-an-experiment'\n\ndef run(spec): ...\n"
    (package / "estimator_runs.py").write_text(helper, encoding="utf-8")
    assert index(package) == INDEX


def test_a_module_may_register_several_experiments_in_call_order():
    source = _module(
        """
        class B(Experiment):
            name = "b"
            title = reference = "B"
            presets = {}
        class A(Experiment):
            name: str = "a"
            title = "A"
            reference = "R"
            presets: dict = {"quick": quick}
        CATALOG.add("b", B())
        CATALOG.add("a", A())
        """
    )
    assert read_entries(source) == [("b", ("B", "B", ())), ("a", ("A", "R", ("quick",)))]


def test_name_and_presets_come_from_the_module_where_the_class_does_not_set_them():
    source = _module(
        """
        NAME = "m"
        def quick(): ...
        def tiny(): ...
        def run(spec): ...
        class M(Experiment):
            \"\"\"The summary.\"\"\"
            title = "T"
            reference = "R"
        CATALOG.add(NAME, M())
        """
    )
    assert read_entries(source) == [("m", ("T", "R", ("tiny", "quick")))]  # PRESET_NAMES order, not source order


def test_a_class_without_presets_in_a_module_without_preset_functions_is_named():
    source = _module('NAME = "m"\nclass M(Experiment):\n    title = reference = "T"\nCATALOG.add(NAME, M())\n')
    with pytest.raises(CatalogSourceError, match="M: no presets"):
        read_entries(source)


@pytest.mark.parametrize(
    ("body", "attribute"),
    [
        ('title = "T".upper()', r"X\.title"),  # a call
        ('title = f"T {NAME}"', r"X\.title"),  # an f-string
        ("title = IMPORTED", r"X\.title"),  # a name bound outside the module
        ('title = "T"\nREBOUND = "a"\nREBOUND = "b"\nreference = REBOUND', r"X\.reference"),  # bound twice
        ('title = "T"\npresets = {**BASE}', r"X\.presets"),
        ('title = "T"\npresets = dict(tiny=tiny)', r"X\.presets"),
        ('title = "T"\npresets = {TINY: tiny}', r"X\.presets key"),
        ("", r"X\.title is not assigned"),  # inherited
        ('name, title = "x", "T"', r"X\.title is not assigned"),  # tuple unpacking is not read
        ('title = "T"\nname = "other"', r"X\.name is 'other' but CATALOG.add registers it as 'x'"),
    ],
)
def test_an_attribute_that_cannot_be_read_statically_names_the_module_and_the_attribute(body: str, attribute: str):
    defaults = {"name": 'name = "x"', "reference": 'reference = "R"', "presets": 'presets = {"tiny": tiny}'}
    lines = [line for key, line in defaults.items() if f"{key} =" not in body] + body.splitlines()
    source = _module("class X(Experiment):\n" + textwrap.indent("\n".join(lines), "    ") + '\nCATALOG.add("x", X())')
    with pytest.raises(CatalogSourceError, match=rf"^new_module\.py:\d+: {attribute}"):
        read_entries(source, "new_module.py")


@pytest.mark.parametrize(
    ("registration", "message"),
    [
        ("CATALOG.add(make_name(), X())", "the name given to CATALOG.add"),
        ('CATALOG.add("x", X(1))', "called with no arguments"),
        ('CATALOG.add("x", factory.make())', "called with no arguments"),
        ('CATALOG.add("x", Missing())', "class Missing is not defined"),
        ('CATALOG.add("x", X(), replace=True)', "two positional arguments"),
    ],
)
def test_a_registration_that_cannot_be_read_statically_names_the_module_and_line(registration: str, message: str):
    source = _module(f'class X(Experiment):\n    name = title = reference = "x"\n    presets = {{}}\n{registration}')
    with pytest.raises(CatalogSourceError, match=rf"^new_module\.py:\d+: .*{message}"):
        read_entries(source, "new_module.py")


def test_an_unreadable_module_in_the_package_fails_the_index_naming_it(tmp_path: Path):
    package = _copy_of_experiments(tmp_path)
    (package / "broken.py").write_text(NEW_MODULE.replace('", Sec. 2"', "'.'.join(())"), encoding="utf-8")
    with pytest.raises(CatalogSourceError, match=r"broken\.py:\d+: NewExperiment\.reference"):
        index(package)


def _copy_of_experiments(tmp_path: Path) -> Path:
    """A copy of the installed experiments package's sources, to add modules to."""
    package = tmp_path / "experiments"
    shutil.copytree(catalog.EXPERIMENTS_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def _module(body: str) -> str:
    """A module's source: the imports an experiment module starts with, then `body` (dedented)."""
    return "from biaslab.experiments.base import CATALOG, Experiment\n\n" + textwrap.dedent(body)
