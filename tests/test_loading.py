"""load_app: import strings, factories, env files, and every error a person can meet."""

from __future__ import annotations

import gc
import importlib
import os
import sys
import textwrap
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from dualcorn.errors import LoadError
from dualcorn.loading import AppCodeError, load_app, load_env_file, parse_import_string


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory to write modules into; sys.path, sys.modules and env restored."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    saved_env = dict(os.environ)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        del sys.modules[name]
    os.environ.clear()
    os.environ.update(saved_env)
    importlib.invalidate_caches()


def write(directory: Path, relative: str, source: str) -> Path:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return path


ASGI_APP = """
async def app(scope, receive, send):
    pass
"""


# --- success paths -----------------------------------------------------------------------------


def test_module_attribute(project: Path) -> None:
    write(project, "lm_plain.py", ASGI_APP)
    app = load_app("lm_plain:app")
    assert app is sys.modules["lm_plain"].app


def test_app_dir_is_inserted_once_as_absolute_path(project: Path) -> None:
    write(project, "src/lm_in_src.py", ASGI_APP)
    load_app("lm_in_src:app", app_dir="src")
    load_app("lm_in_src:app", app_dir="src")
    expected = str(project / "src")
    assert sys.path[0] == expected
    assert sys.path.count(expected) == 1


def test_nested_attribute_in_package(project: Path) -> None:
    write(project, "lm_pkg/__init__.py", "")
    write(project, "lm_pkg/main.py", "class Holder:\n    async def app(self, s, r, w): ...\n" +
          "holder = Holder()\n")  # fmt: skip
    app = load_app("lm_pkg.main:holder.app")
    assert app.__self__ is sys.modules["lm_pkg.main"].holder


def test_call_form_calls_factory_once(project: Path) -> None:
    write(project, "lm_factory.py", """
        calls = []
        def create_app():
            calls.append(1)
            async def app(scope, receive, send): ...
            return app
    """)  # fmt: skip
    app = load_app("lm_factory:create_app()", factory=True)  # both: still one call
    module = sys.modules["lm_factory"]
    assert module.calls == [1]
    assert app.__name__ == "app"


def test_factory_flag(project: Path) -> None:
    write(project, "lm_factory_flag.py", """
        def create_app():
            return lambda environ, start_response: []
    """)  # fmt: skip
    app = load_app("lm_factory_flag:create_app", factory=True)
    assert app.__name__ == "<lambda>"


def test_object_is_returned_as_is_or_called_as_factory() -> None:
    def app(environ: object, start_response: object) -> list[bytes]:
        return []

    assert load_app(app) is app
    assert load_app(lambda: app, factory=True) is app


# --- import string syntax ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("main:app", ("main", "app", False)),
        (" pkg.main:api.app ", ("pkg.main", "api.app", False)),
        ("main:create_app()", ("main", "create_app", True)),
    ],
)
def test_parse_import_string(text: str, parsed: tuple[str, str, bool]) -> None:
    assert parse_import_string(text) == parsed


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("main", "expected 'module:attribute'"),
        ("main.app", "did you mean 'main:app'?"),
        ("main:", "expected 'module:attribute'"),
        (":app", "expected 'module:attribute'"),
        ("main:app:x", "expected 'module:attribute'"),
        ("main.py:app", "did you mean 'main:app'?"),
        ("src/pkg/main.py:app", "did you mean 'src.pkg.main:app'?"),
        ("main:create_app(debug=True)", "called with no arguments"),
        ("main:1app", "expected 'module:attribute'"),
    ],
)
def test_bad_format(text: str, hint: str) -> None:
    with pytest.raises(LoadError) as caught:
        load_app(text)
    assert hint in str(caught.value)
    assert not getattr(caught.value, "show_traceback", False)


# --- import failures ---------------------------------------------------------------------------


def test_module_not_found_names_module_and_directory(project: Path) -> None:
    with pytest.raises(LoadError) as caught:
        load_app("lm_nowhere:app")
    message = str(caught.value)
    assert "could not import module 'lm_nowhere'" in message
    assert str(project) in message
    assert "--app-dir" in message
    assert caught.value.__cause__ is None
    assert not getattr(caught.value, "show_traceback", False)


def test_missing_parent_package_is_module_not_found(project: Path) -> None:
    with pytest.raises(LoadError, match=r"could not import module 'lm_nopkg\.main'.*'lm_nopkg'"):
        load_app("lm_nopkg.main:app")


def test_missing_submodule_of_existing_package(project: Path) -> None:
    write(project, "lm_pkg2/__init__.py", "")
    with pytest.raises(LoadError, match=r"could not import module 'lm_pkg2\.absent'"):
        load_app("lm_pkg2.absent:app")


def test_missing_dependency_is_not_module_not_found(project: Path) -> None:
    write(project, "lm_needs_dep.py", "import lm_not_installed_dependency\n" + ASGI_APP)
    with pytest.raises(AppCodeError) as caught:
        load_app("lm_needs_dep:app")
    message = str(caught.value)
    assert message == (
        "importing 'lm_needs_dep' failed: No module named 'lm_not_installed_dependency'"
    )
    assert "could not import module" not in message
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert caught.value.show_traceback is True


def test_missing_dependency_with_parent_name_prefix(project: Path) -> None:
    # 'lm_pkg3.main' imports 'lm_pkg3.helpers', which does not exist: the requested module
    # was found, so this is the app's broken import, not a missing module.
    write(project, "lm_pkg3/__init__.py", "")
    write(project, "lm_pkg3/main.py", "import lm_pkg3.helpers\n")
    with pytest.raises(AppCodeError, match=r"importing 'lm_pkg3\.main' failed: .*helpers"):
        load_app("lm_pkg3.main:app")


def test_exception_during_import_is_the_apps_own(project: Path) -> None:
    write(project, "lm_raises.py", "raise RuntimeError('database url missing')\n")
    with pytest.raises(LoadError) as caught:
        load_app("lm_raises:app")
    assert str(caught.value) == "importing 'lm_raises' failed: RuntimeError: database url missing"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert getattr(caught.value, "show_traceback", False) is True
    assert "lm_raises" not in sys.modules
    # The traceback the CLI prints starts in the application, not in dualcorn or importlib.
    frames = traceback.extract_tb(caught.value.__cause__.__traceback__)
    assert [Path(frame.filename).name for frame in frames] == ["lm_raises.py"]


def test_syntax_error_is_the_apps_own(project: Path) -> None:
    write(project, "lm_syntax.py", "def app(:\n")
    with pytest.raises(AppCodeError, match=r"importing 'lm_syntax' failed: SyntaxError") as caught:
        load_app("lm_syntax:app")
    printed = "".join(traceback.format_exception(caught.value.__cause__))
    assert "lm_syntax.py" in printed
    assert "importlib" not in printed


def test_sys_exit_at_import_explains_itself(project: Path) -> None:
    write(project, "lm_exits.py", "import sys\nsys.exit(2)\n")
    with pytest.raises(AppCodeError, match=r"called sys.exit\(2\).*__name__ == '__main__'"):
        load_app("lm_exits:app")


def test_missing_app_dir(project: Path) -> None:
    with pytest.raises(LoadError, match=r"app directory 'nope' does not exist"):
        load_app("main:app", app_dir="nope")


def test_app_dir_none_leaves_sys_path_alone(project: Path) -> None:
    before = list(sys.path)
    with pytest.raises(LoadError, match=r"could not import module 'lm_unlisted'"):
        load_app("lm_unlisted:app", app_dir=None)
    assert sys.path == before


# --- attributes --------------------------------------------------------------------------------


def test_missing_attribute_suggests_close_names(project: Path) -> None:
    write(project, "lm_attrs.py", ASGI_APP + "application = app\n")
    with pytest.raises(LoadError) as caught:
        load_app("lm_attrs:ap")
    assert str(caught.value) == "module 'lm_attrs' has no attribute 'ap'; did you mean 'app'?"
    with pytest.raises(LoadError) as caught:
        load_app("lm_attrs:aplication")
    assert str(caught.value).endswith("did you mean 'application'?")


def test_missing_attribute_lists_defined_callables(project: Path) -> None:
    write(project, "lm_defs.py", "from os.path import join\nVALUE = 1\n" + ASGI_APP)
    with pytest.raises(LoadError) as caught:
        load_app("lm_defs:server")
    assert str(caught.value) == "module 'lm_defs' has no attribute 'server'; it defines 'app'"


def test_missing_nested_attribute(project: Path) -> None:
    write(project, "lm_nested.py", "class Api:\n    router = None\napi = Api()\n")
    with pytest.raises(
        LoadError, match=r"object 'lm_nested:api' has no attribute 'routr'.*'router'"
    ):
        load_app("lm_nested:api.routr")


def test_failing_property_is_the_apps_own(project: Path) -> None:
    write(project, "lm_prop.py", """
        class Holder:
            @property
            def app(self):
                raise KeyError("SECRET_KEY")
        holder = Holder()
    """)  # fmt: skip
    with pytest.raises(AppCodeError, match=r"reading lm_prop:holder\.app failed: KeyError"):
        load_app("lm_prop:holder.app")


# --- callability and factories -----------------------------------------------------------------


def test_not_callable_says_what_was_found(project: Path) -> None:
    write(project, "lm_notcallable.py", "app = {'routes': list(range(100))}\n")
    with pytest.raises(LoadError) as caught:
        load_app("lm_notcallable:app")
    message = str(caught.value)
    assert message.startswith("'lm_notcallable:app' is not callable: found dict {'routes'")
    assert message.endswith("...")
    assert len(message) < 120


def test_factory_exception_is_the_apps_own(project: Path) -> None:
    write(project, "lm_badfactory.py", "def create_app():\n    raise ValueError('no config')\n")
    with pytest.raises(AppCodeError) as caught:
        load_app("lm_badfactory:create_app()")
    assert str(caught.value) == (
        "calling factory 'lm_badfactory:create_app' failed: ValueError: no config"
    )
    assert isinstance(caught.value.__cause__, ValueError)
    frames = traceback.extract_tb(caught.value.__cause__.__traceback__)
    assert [(Path(f.filename).name, f.name) for f in frames] == [("lm_badfactory.py", "create_app")]


def test_factory_that_needs_arguments(project: Path) -> None:
    write(project, "lm_argfactory.py", "def create_app(settings):\n    pass\n")
    with pytest.raises(LoadError) as caught:
        load_app("lm_argfactory:create_app", factory=True)
    assert "cannot be called without arguments" in str(caught.value)
    assert "'settings'" in str(caught.value)
    assert not isinstance(caught.value, AppCodeError)


def test_factory_returning_none(project: Path) -> None:
    write(project, "lm_nonefactory.py", "def create_app():\n    app = object()\n")
    with pytest.raises(LoadError, match=r"returned None; does it end with `return app`"):
        load_app("lm_nonefactory:create_app()")


def test_async_factory(project: Path) -> None:
    write(project, "lm_asyncfactory.py", "async def create_app():\n    return None\n")
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        with pytest.raises(LoadError, match=r"factory 'lm_asyncfactory:create_app' is async"):
            load_app("lm_asyncfactory:create_app()")
        gc.collect()
    # The coroutine was closed, so Python has no "was never awaited" warning to give.
    assert [str(w.message) for w in caught_warnings] == []


def test_factory_returning_non_callable(project: Path) -> None:
    write(project, "lm_strfactory.py", "def create_app():\n    return 'app'\n")
    with pytest.raises(LoadError, match=r"returned is not callable: found str 'app'"):
        load_app("lm_strfactory:create_app", factory=True)


def test_factory_flag_on_non_callable(project: Path) -> None:
    write(project, "lm_constant.py", "app = 42\n")
    with pytest.raises(LoadError, match=r"cannot be called as a factory: found int 42"):
        load_app("lm_constant:app", factory=True)


def test_forgotten_factory_flag(project: Path) -> None:
    write(project, "lm_forgot.py", "def create_app():\n    return None\n")
    with pytest.raises(LoadError) as caught:
        load_app("lm_forgot:create_app")
    assert "pass --factory or write 'lm_forgot:create_app()'" in str(caught.value)


# --- env files ---------------------------------------------------------------------------------


def test_env_file_is_loaded_before_import_without_overriding(project: Path) -> None:
    write(project, ".env", """
        # comment
        LM_FROM_FILE=file
        export LM_EXPORTED="quoted value"
        LM_ALREADY_SET=file
    """)  # fmt: skip
    os.environ["LM_ALREADY_SET"] = "environment"
    write(project, "lm_env.py", "import os\nSEEN = os.environ['LM_FROM_FILE']\n" + ASGI_APP)
    load_app("lm_env:app", env_file=".env")
    assert sys.modules["lm_env"].SEEN == "file"
    assert os.environ["LM_EXPORTED"] == "quoted value"
    assert os.environ["LM_ALREADY_SET"] == "environment"


def test_env_file_without_python_dotenv(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dotenv", None)  # makes `import dotenv` raise ImportError
    write(project, "plain.env", "LM_PLAIN=a b # trailing comment\nLM_SQ='x=1'\n\n")
    load_env_file("plain.env")
    assert os.environ["LM_PLAIN"] == "a b"
    assert os.environ["LM_SQ"] == "x=1"


def test_env_file_bad_line_without_python_dotenv(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dotenv", None)
    write(project, "bad.env", "GOOD=1\nthis is not an assignment\n")
    with pytest.raises(LoadError, match=r"bad\.env, line 2: expected KEY=VALUE"):
        load_env_file("bad.env")


def test_missing_env_file(project: Path) -> None:
    with pytest.raises(LoadError, match=r"env file 'missing\.env' not found"):
        load_app("main:app", env_file="missing.env")
