"""The product code's shape (tests/layout.py): imports only downwards, no circles, a small
encoder/ root, and modules and functions a reader takes in at once."""

from tests.layout import (
    MAX_FUNCTION_LINES,
    MAX_MODULE_LINES,
    MAX_ROOT_MODULES,
    Module,
    cycles,
    load_modules,
    long_functions,
    root_modules,
    sizes,
    wrong_way,
)


def test_no_import_goes_up_or_sideways_and_none_circles():
    modules = load_modules()
    assert len(modules) > 40  # the whole product was read
    assert cycles(modules) == []
    assert wrong_way(modules) == []


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path):
    """The two checks above can fail: a made-up pair of modules breaks both."""
    low = Module("encoder.errors", tmp_path / "a.py", frozenset({"encoder.http.app"}))
    high = Module("encoder.http.app", tmp_path / "b.py", frozenset({"encoder.errors"}))
    modules = {m.name: m for m in (low, high)}
    assert cycles(modules) == [["encoder.errors", "encoder.http.app"]]
    assert wrong_way(modules) == ["encoder.errors -> encoder.http.app (up)"]


def test_encoder_root_holds_the_core_alone():
    assert len(root_modules()) <= MAX_ROOT_MODULES, root_modules()


def test_modules_and_functions_stay_short():
    too_long = {name: lines for name, lines in sizes(load_modules()).items()
                if lines > MAX_MODULE_LINES}
    assert not too_long
    assert long_functions(load_modules()) == [], f"over {MAX_FUNCTION_LINES} lines"
