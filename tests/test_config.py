import pytest

from semireg.config import RunConfig, config_for, from_kwargs, load_recipe, parse_override, recipe_names, resolve
from semireg.errors import ConfigError


def test_every_bundled_recipe_resolves():
    names = recipe_names()
    assert {"demo", "mnist-vat-grid", "mnist-100-vat"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        dirs = {stage: f"/runs/{stage}" for stage, _ in recipe.stages}
        for variant, _ in recipe.variants:
            for stage, _ in recipe.stages:
                cfg = config_for(recipe, variant, recipe.seeds[0], {}, stage, dirs)
                assert cfg.method["name"]


def test_precedence_override_beats_recipe_beats_default():
    recipe = load_recipe("mnist-100-vat")
    cfg = config_for(recipe, "vat", 0, {})
    assert cfg.train.lr == 2e-3 and cfg.method["eps"] == 3.5  # recipe
    assert cfg.train.momentum == 0.9  # code default
    cfg = config_for(recipe, "vat", 0, dict([parse_override("method.eps=3"), parse_override("lr=0.01")]))
    assert cfg.method["eps"] == 3.0 and cfg.train.lr == 0.01


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("train.nope", 1, "unknown key 'train.nope'"),
        ("train.steps", "many", "train.steps: expected int"),
        ("train.steps", 1.5, "train.steps: expected int"),
        ("train.deterministic", 1, "expected bool"),
        ("method.eps", "big", "method.eps: expected float"),
        ("method.bogus", 1, "unknown key 'method.bogus'"),
        ("model.name", "resnet9000", "unknown model"),
        ("method.name", "magic", "unknown method"),
        ("train.optimizer", "lion", "not one of"),
        ("data.n_test", -1, "data.n_test must be >= 0"),  # was "no test set" under holdout, silently
        ("data.n_val", -5, "data.n_val must be >= 0"),
    ],
)
def test_bad_keys_and_types_are_errors(key, value, match):
    recipe = load_recipe("mnist-100-vat")
    with pytest.raises(ConfigError, match=match):
        config_for(recipe, "vat", 0, {key: value})


def test_unknown_recipe_is_an_error():
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("mnist-1000000-magic")


def test_newer_config_version_is_refused():
    with pytest.raises(ConfigError, match="newer semireg"):
        resolve({"version": 99})


def test_override_values_are_parsed_as_toml():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=1e-3") == ("a", 0.001)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("a=adam") == ("a", "adam")
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_short_keys_route_to_their_section():
    cfg = from_kwargs({"steps": 7, "eps": 1.5, "dropout": 0.1}, base={"method": {"name": "vat"}})
    assert cfg.train.steps == 7 and cfg.method["eps"] == 1.5 and cfg.model.dropout == 0.1


def test_stages_and_per_variant_stage_overrides():
    from semireg.config import config_for, parse_recipe

    raw = {
        "train": {"steps": 10},
        "stages": [{"name": "teacher"}, {"name": "student", "teacher": "@teacher", "method": {"name": "consistency"}}],
        "variants": [
            {"name": "a"},
            {"name": "b", "stages": {"student": {"init_from": "@teacher", "train": {"steps": 3}}}},
        ],
    }
    recipe = parse_recipe(raw, "r")
    dirs = {"teacher": "/runs/t", "student": "/runs/s"}
    t = config_for(recipe, "b", 0, {}, "teacher", dirs)
    s = config_for(recipe, "b", 0, {}, "student", dirs)
    assert t.train.steps == 10 and t.init_from == "" and t.teacher == ""
    assert s.train.steps == 3 and s.init_from == "/runs/t" and s.teacher == "/runs/t"
    assert config_for(recipe, "a", 0, {}, "student", dirs).init_from == ""
    # The command line beats every level of a recipe, a variant's per-stage table included (it lost to it
    # until 2026-12-04: `train.steps=5` gave the student 3 steps).
    assert config_for(recipe, "b", 0, {"train.steps": 5}, "student", dirs).train.steps == 5
    with pytest.raises(ConfigError, match="earlier stage"):
        parse_recipe({"stages": [{"name": "x", "init_from": "@x"}]}, "bad")


def test_a_key_a_system_would_ignore_is_an_error_saying_where_it_lives():
    from semireg.config import from_kwargs

    with pytest.raises(
        ConfigError, match=r"train\.lr: the multi-network system 'began' does not read it; .*method\.gen_lr"
    ):
        from_kwargs({"train.lr": 0.1, "method.name": "began"})
    with pytest.raises(ConfigError, match=r"train\.optimizer: .*'disentangle'"):
        from_kwargs({"train.optimizer": "sgd", "method.name": "disentangle"})
    with pytest.raises(ConfigError, match=r"augment\.pad: .*draw the images as they are"):
        from_kwargs({"augment.pad": 2, "method.name": "disentangle"})
    assert from_kwargs({"train.lr": 0.1, "method.name": "vat"}).train.lr == 0.1  # a method reads it


def test_short_keys_route_the_same_way_on_the_command_line_and_in_python():
    from semireg.config import from_kwargs

    recipe = load_recipe("mnist-began")
    variant = recipe.variants[0][0]
    cli = config_for(recipe, variant, 0, {"lr": 3e-4, "steps": 7})
    api = from_kwargs({"lr": 3e-4, "steps": 7}, base={"method": {"name": "began"}})
    assert cli.method["lr"] == api.method["lr"] == 3e-4  # BEGAN's own lr, not train.lr
    assert cli.train.lr == api.train.lr == RunConfig().train.lr and cli.train.steps == api.train.steps == 7
    assert from_kwargs({"lr": 3e-4}).train.lr == 3e-4  # a method without an lr option: the train section's


def test_steps_on_the_command_line_win_over_a_recipes_epochs():
    recipe = load_recipe("mnist-vat-grid")  # epochs = 12
    assert config_for(recipe, "plain", 0, {}).train.epochs == 12
    cfg = config_for(recipe, "plain", 0, {"train.steps": 100})
    assert cfg.train.steps == 100 and cfg.train.epochs == 0  # not silently outranked by the recipe
    both = config_for(recipe, "plain", 0, {"train.steps": 100, "train.epochs": 2})
    assert both.train.epochs == 2  # both given: epochs, as documented, decide
