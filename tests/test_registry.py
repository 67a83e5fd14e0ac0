"""The router registry: names, prefixes, local folders, and the errors in between."""

from __future__ import annotations

import pytest

from cares_integrations import (
    FixedRouter,
    LearnedDefaultRouter,
    TextScaleRouter,
    list_routers,
    load_router,
    register_folder_format,
    register_router,
)
from cares_integrations.routers import registry
from cares_integrations.training.learned_net import load_torch_net, save_learned


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_FOLDER_FORMATS", list(registry._FOLDER_FORMATS))


def test_builtin_names_and_their_identity():
    assert {"default", "text-scale", "learned-default", "fixed:ARG", "hub:ARG"} <= set(list_routers())
    fixed = load_router("fixed:384", target="qwen2.5-vl")
    assert isinstance(fixed, FixedRouter) and fixed.source == "fixed:384"
    assert fixed.identity()["source"] == "fixed:384" and fixed.identity()["target"] == "qwen2.5-vl"
    assert load_router().source == "default" and isinstance(load_router("text-scale", device="cpu"), TextScaleRouter)


def test_register_router_and_url_forms(clean_registry):
    seen = []

    def remote(arg, **options):
        seen.append(arg)
        return FixedRouter(512, **options)

    register_router("cares-tcp", remote, takes_argument=True)
    router = load_router("cares-tcp://127.0.0.1:8000", target="openai:gpt-4o")
    assert seen == ["cares-tcp://127.0.0.1:8000"] and router.source == "cares-tcp://127.0.0.1:8000"
    assert "cares-tcp:ARG" in list_routers()
    with pytest.raises(ValueError, match="already registered"):
        register_router("cares-tcp", remote)
    register_router("mine", lambda arg, **o: FixedRouter(99, **o))
    assert load_router("mine").fixed_long_side == 99
    with pytest.raises(ValueError, match="takes no argument"):
        load_router("mine:3")
    with pytest.raises(ValueError, match="router name"):
        register_router("Bad Name", remote)


def test_a_builtin_name_never_shadows_a_folder_written_as_a_path(tmp_path, monkeypatch):
    shipped = LearnedDefaultRouter()
    config, net = load_torch_net(shipped.path)
    folder = tmp_path / "text-scale"
    save_learned(folder, config, net)
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_router("text-scale"), TextScaleRouter)  # the bare name is the built-in
    for source in ("./text-scale", str(folder), folder):
        router = load_router(source)
        assert isinstance(router, LearnedDefaultRouter) and router.path.resolve() == folder.resolve()


def test_registered_folder_formats_come_first(tmp_path, clean_registry):
    (tmp_path / "calibrated.json").write_text("{}")
    register_folder_format("calibrated", lambda p: (p / "calibrated.json").is_file(),
                           lambda p, **o: FixedRouter(640, **o))
    assert load_router(tmp_path).fixed_long_side == 640


@pytest.mark.parametrize(("source", "error", "message"), [
    ("no-such-router", ValueError, "unknown router 'no-such-router'.*fixed:ARG"),
    ("nope:3", ValueError, "unknown router prefix 'nope'"),
    ("fixed:big", ValueError, "pixel size"),
    ("fixed", ValueError, "needs an argument"),
    ("hub:not a hub id", ValueError, "org/name"),
    ("./missing-folder", FileNotFoundError, "does not exist"),
])
def test_clear_errors(source, error, message):
    with pytest.raises(error, match=message):
        load_router(source)


def test_options_cannot_reach_an_existing_router():
    router = FixedRouter(300)
    assert load_router(router) is router
    with pytest.raises(TypeError, match="existing Router"):
        load_router(router, device="cpu")
