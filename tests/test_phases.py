"""Multi-network training: frozen modules, shared weights, per-sample losses, loss state, resume.

The system tests iterate the registry, so a new system is covered for free.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from stepping import assert_steps_alike
from torch import nn

import semireg
from semireg.config import from_kwargs
from semireg.errors import ConfigError
from semireg.phase_loop import train_system, train_system_config
from semireg.phases import OptimizerSpec, Phase, PhaseBatch, System, Terms, reduce_per_sample, trained_only
from semireg.systems import SYSTEMS, get_system
from semireg.systems.began import Balance, BeganOptions, build_began
from semireg.traindata import TrainData


def _toy_data(n=64, shape=(1, 8, 8), k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    y = torch.arange(n) % k
    return TrainData(x_l=x, y_l=y, x_u=None, num_classes=k, eval_sets={"test": (x[:32].clone(), y[:32].clone())})


def _bn_net(d_in=4, d_out=4):
    return nn.Sequential(nn.Linear(d_in, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, d_out))


def _two_net_system(steps=1):
    """front -> back; the phase trains `front` only, through the frozen `back`."""

    def loss(nets, batches, state):
        x = batches[0].x.flatten(1)[:, :4]
        t = Terms()
        t.add("mse", nets["back"](nets["front"](x)).pow(2).mean(1))
        return t.out()

    nets = nn.ModuleDict({"front": _bn_net(), "back": _bn_net()})
    return System(nets=nets, phases=[Phase("p", ("front",), loss, OptimizerSpec("sgd", 0.1), steps)])


def _cfg(**kw):
    return from_kwargs({"progress": False, "batch_size": 16, **kw})


# ----------------------------------------------------------------------------- freezing


def test_modules_outside_the_phase_get_no_gradient_and_keep_weights_and_bn_statistics():
    system = _two_net_system()
    back_before = copy.deepcopy(system.nets["back"].state_dict())
    front_before = copy.deepcopy(system.nets["front"].state_dict())
    train_system(_cfg(steps=5), system, _toy_data())
    back_after, front_after = system.nets["back"].state_dict(), system.nets["front"].state_dict()
    for key, value in back_before.items():  # weights and BatchNorm running statistics
        assert torch.equal(value, back_after[key]), key
    assert all(p.grad is None for p in system.nets["back"].parameters())
    # ...while the trained module did move, weights and BN statistics both.
    assert not torch.equal(front_before["0.weight"], front_after["0.weight"])
    assert not torch.equal(front_before["1.running_mean"], front_after["1.running_mean"])
    assert int(front_after["1.num_batches_tracked"]) == 5


def test_gradient_flows_through_a_frozen_module_to_the_trained_one():
    nets = nn.ModuleDict({"front": _bn_net(), "back": _bn_net()})
    x = torch.randn(16, 4)
    with trained_only(nets, ("front",)):
        nets["back"](nets["front"](x)).pow(2).mean().backward()
        assert not nets["back"][1].training  # BatchNorm of the frozen module in eval mode
        assert nets["front"][1].training
    assert all(p.grad is None for p in nets["back"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nets["front"].parameters())
    # restored afterwards: everything trainable and in train mode again
    assert all(p.requires_grad for p in nets.parameters()) and nets["back"][1].training


def test_a_shared_module_gets_gradients_from_every_place_it_is_used():
    shared = nn.Linear(4, 4)
    nets = nn.ModuleDict({"left": shared, "right": shared, "head": nn.Linear(4, 1)})
    x1, x2 = torch.randn(8, 4), torch.randn(8, 4)

    def grad_of(use_left, use_right):
        nets.zero_grad(set_to_none=True)
        with trained_only(nets, ("left",)):  # `right` is the same module: trained too
            loss = 0
            if use_left:
                loss = loss + nets["head"](nets["left"](x1)).sum()
            if use_right:
                loss = loss + nets["right"](x2).pow(2).sum()
            loss.backward()
        return shared.weight.grad.clone()

    g_left, g_right, g_both = grad_of(True, False), grad_of(False, True), grad_of(True, True)
    assert g_left.abs().sum() > 0 and g_right.abs().sum() > 0
    torch.testing.assert_close(g_both, g_left + g_right)
    assert nets["head"].weight.grad is None  # head frozen in this phase


# ----------------------------------------------------------------------------- loss terms


def test_per_sample_losses_with_sample_weights():
    x = torch.randn(4, 3, requires_grad=True)
    per_sample = x.pow(2).sum(1)  # (4,)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    t = Terms()
    value = t.add("l", per_sample, weight=3.0, sample_weight=w)
    torch.testing.assert_close(value, (per_sample * w).sum() / w.sum())
    t.out()["loss"].backward()
    assert x.grad[1].abs().sum() == 0 and x.grad[0].abs().sum() > 0  # weight 0: no gradient from that sample
    torch.testing.assert_close(x.grad[2], 2 * x.grad[0] * x[2] / x[0])
    with pytest.raises(ValueError):
        reduce_per_sample(torch.ones(4, 2))
    with pytest.raises(ValueError):
        Terms().add("a", torch.ones(3), sample_weight=torch.ones(2))


def test_terms_total_is_the_weighted_sum_and_logs_the_unweighted_terms():
    t = Terms()
    t.add("a", torch.tensor(2.0), weight=0.5)
    t.add("b", torch.tensor([1.0, 3.0]), weight=torch.tensor(-1.0))
    t.log("acc", 0.75)
    out = t.out()
    assert float(out["loss"]) == pytest.approx(0.5 * 2 - 2.0)
    assert float(out["a"]) == 2.0 and float(out["b"]) == 2.0 and float(out["acc"]) == 0.75
    with pytest.raises(ValueError):
        t.add("a", torch.tensor(1.0))


def test_a_bad_system_is_a_config_error():
    system = _two_net_system()
    bad = System(nets=system.nets, phases=[Phase("p", ("nope",), system.phases[0].loss)])
    with pytest.raises(ConfigError, match="nope"):
        train_system(_cfg(steps=1), bad, _toy_data())
    with_params = System(nets=system.nets, phases=system.phases, state=nn.ModuleDict({"w": nn.Linear(1, 1)}))
    with pytest.raises(ConfigError, match="buffers"):
        train_system(_cfg(steps=1), with_params, _toy_data())


def test_a_phase_adam_runs_fused_where_the_parameters_allow_and_moves_as_the_default_one():
    torch.manual_seed(0)
    net = nn.Linear(6, 2)
    reference = copy.deepcopy(net)
    spec = OptimizerSpec("adam", lr=0.01, betas=(0.5, 0.999), weight_decay=0.01)
    fused, plain = (
        spec.build(list(net.parameters())),
        torch.optim.Adam(reference.parameters(), lr=0.01, betas=(0.5, 0.999), weight_decay=0.01),
    )
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    assert_steps_alike([(net, fused), (reference, plain)], torch.randn(12, 6), steps=4)
    assert not spec.build([nn.Parameter(torch.zeros(2, device="meta"))]).defaults["fused"]


# ----------------------------------------------------------------------------- every registered system


def _tiny_options(name):
    return {
        "disentangle": {
            "hidden": 16,
            "dim_s": 4,
            "dim_z": 4,
            "probe_train": 64,
            "probe_epochs": 1,
            "judge_epochs": 1,
            "tsne_points": 40,
            "guard_epochs": 1,
        },
        "began": {"filters": 4, "h_dim": 8, "z_dim": 8, "n_samples": 8, "judge_epochs": 1},
    }.get(name, {})


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_each_phase_trains_exactly_its_modules(name):
    spec = get_system(name)
    torch.manual_seed(0)
    system = spec.build((1, 8, 8), 10, spec.options(**_tiny_options(name)), None)
    data = _toy_data()
    trained_somewhere = set()
    for phase in system.phases:
        batches = [
            PhaseBatch(data.x_l[i * 16 : (i + 1) * 16], data.y_l[i * 16 : (i + 1) * 16]) for i in range(phase.batches)
        ]
        system.nets.zero_grad(set_to_none=True)
        with trained_only(system.nets, phase.trains):
            terms = phase.loss(system.nets, batches, system.state)
            terms["loss"].backward()
        trained = {id(p) for n in phase.trains for p in system.nets[n].parameters()}
        for mod_name, module in system.nets.items():
            for p_name, p in module.named_parameters():
                if id(p) in trained:
                    assert p.grad is not None and p.grad.abs().sum() > 0, (
                        f"{phase.name}: {mod_name}.{p_name} got no gradient"
                    )
                else:
                    assert p.grad is None, f"{phase.name}: frozen {mod_name}.{p_name} got a gradient"
        trained_somewhere |= set(phase.trains)
        assert torch.isfinite(terms["loss"])
    assert trained_somewhere == set(system.nets), "a module no phase trains"


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_each_system_trains_through_the_cli_config_and_writes_its_outputs(name, tmp_path):
    cfg = from_kwargs(
        {
            "method.name": name,
            **{f"method.{k}": v for k, v in _tiny_options(name).items()},
            "steps": 4,
            "batch_size": 16,
            "log_every": 2,
            "eval_every": 2,
            "progress": False,
        }
    )
    result = train_system_config(cfg, tmp_path / "run", data=_toy_data())
    assert (tmp_path / "run" / "results.json").exists() and (tmp_path / "run" / "curves.png").exists()
    assert result.metrics["rounds"] == 4 and result.metrics["headline"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any('"kind": "eval"' in line for line in lines)


# ----------------------------------------------------------------------------- BEGAN's k


def test_began_k_follows_the_update_rule_and_is_clipped():
    bal = Balance(gamma=0.5, lambda_k=0.1, k_init=0.2)
    bal.update(torch.tensor(1.0), torch.tensor(0.3))  # gamma*L_real - L_fake = 0.2
    assert float(bal.k) == pytest.approx(0.22)
    assert float(bal.m_global) == pytest.approx(1.0 + 0.2)
    for _ in range(100):
        bal.update(torch.tensor(0.0), torch.tensor(1.0))
    assert float(bal.k) == 0.0
    for _ in range(100):
        bal.update(torch.tensor(10.0), torch.tensor(0.0))
    assert float(bal.k) == 1.0


def test_began_discriminator_loss_uses_this_steps_k_and_updates_it():
    opts = BeganOptions(filters=4, h_dim=8, z_dim=8, k_init=0.3, lambda_k=0.01)
    system = build_began((1, 8, 8), 10, opts)
    x = torch.rand(16, 1, 8, 8)
    torch.manual_seed(1)
    terms = system.phases[0].loss(system.nets, [PhaseBatch(x, torch.zeros(16, dtype=torch.long))], system.state)
    l_real, l_fake = float(terms["l_real"]), float(terms["l_fake"])
    assert float(terms["loss"].detach()) == pytest.approx(l_real - 0.3 * l_fake, rel=1e-5)
    assert float(system.state["balance"].k) == pytest.approx(0.3 + 0.01 * (0.5 * l_real - l_fake), rel=1e-5)
    terms["loss"].backward()  # the in-graph k was not modified by the update


def test_began_lr_factor_halves_only_when_a_window_of_m_global_stalls():
    bal = Balance(gamma=0.5, lambda_k=0.0, k_init=0.0, decay_window=2)
    # M_global = L(x) + |gamma L(x) - L(G(z))| with L(G(z)) = gamma L(x): M = L(x)
    for m in (1.0, 1.0):  # first window: mean 1.0, the best so far
        bal.update(torch.tensor(m), torch.tensor(0.5 * m))
    assert float(bal.lr_factor) == 1.0 and float(bal.m_best) == pytest.approx(1.0)
    for m in (0.8, 0.6):  # falls: no decay
        bal.update(torch.tensor(m), torch.tensor(0.5 * m))
    assert float(bal.lr_factor) == 1.0 and float(bal.m_best) == pytest.approx(0.7)
    bal.update(torch.tensor(0.9), torch.tensor(0.45))  # half a window: nothing decided yet
    assert float(bal.lr_factor) == 1.0
    bal.update(torch.tensor(0.7), torch.tensor(0.35))  # mean 0.8 >= 0.7: stalled, halve
    assert float(bal.lr_factor) == 0.5 and float(bal.m_best) == pytest.approx(0.7)
    off = Balance(gamma=0.5, lambda_k=0.0, k_init=0.0)
    for _ in range(10):
        off.update(torch.tensor(1.0), torch.tensor(0.0))
    assert float(off.lr_factor) == 1.0


def test_a_phase_lr_scale_sets_its_learning_rate_before_each_step():
    frozen = _two_net_system()
    frozen.phases[0] = Phase(
        "p", ("front",), frozen.phases[0].loss, OptimizerSpec("sgd", 0.1), lr_scale=lambda state: 0.0
    )
    before = copy.deepcopy(frozen.nets["front"].state_dict())
    train_system(_cfg(steps=3), frozen, _toy_data())
    for key, value in frozen.nets["front"].state_dict().items():
        if "running" not in key and "num_batches" not in key:
            assert torch.equal(value, before[key]), key  # lr 0: nothing moves
    moving = _two_net_system()
    moving.phases[0] = Phase(
        "p", ("front",), moving.phases[0].loss, OptimizerSpec("sgd", 0.1), lr_scale=lambda state: 1.0
    )
    train_system(_cfg(steps=3), moving, _toy_data())
    assert not torch.equal(moving.nets["front"][0].weight, before["0.weight"])


def test_frozen_norms_batch_keeps_batch_statistics_in_frozen_modules_but_not_their_weights():
    seen = {}

    def loss(nets, batches, state):
        x = batches[0].x.flatten(1)[:, :4]
        seen["back_training"] = nets["back"][1].training
        t = Terms()
        t.add("mse", nets["back"](nets["front"](x)).pow(2).mean(1))
        return t.out()

    for mode, expect_training in (("eval", False), ("batch", True)):
        nets = nn.ModuleDict({"front": _bn_net(), "back": _bn_net()})
        back_weights = copy.deepcopy(
            {k: v for k, v in nets["back"].state_dict().items() if "running" not in k and "num" not in k}
        )
        system = System(nets=nets, phases=[Phase("p", ("front",), loss, OptimizerSpec("sgd", 0.1), frozen_norms=mode)])
        train_system(_cfg(steps=2), system, _toy_data())
        assert seen["back_training"] is expect_training, mode
        for key, value in back_weights.items():
            assert torch.equal(value, nets["back"].state_dict()[key]), (mode, key)
        moved = not torch.equal(nets["back"][1].running_mean, torch.zeros(8))
        assert moved is expect_training, mode  # batch statistics also feed the running estimates
    with pytest.raises(ConfigError, match="frozen_norms"):
        System(nets=nn.ModuleDict({"a": _bn_net()}), phases=[Phase("p", ("a",), loss, frozen_norms="train")]).check()


def test_began_cs_term_is_the_code_distance_to_the_noise_and_needs_matching_sizes():
    opts = BeganOptions(arch="infogan", filters=4, gen_hidden=16, h_dim=8, z_dim=8, cs_weight=0.1, k_init=0.2)
    system = build_began((1, 8, 8), 10, opts)
    x = torch.rand(16, 1, 8, 8)
    terms = system.phases[0].loss(system.nets, [PhaseBatch(x, torch.zeros(16, dtype=torch.long))], system.state)
    l_real, l_fake, cs = float(terms["l_real"]), float(terms["l_fake"]), float(terms["cs"])
    assert cs > 0
    assert float(terms["loss"].detach()) == pytest.approx(l_real - 0.2 * l_fake + 0.1 * cs, rel=1e-5)
    with pytest.raises(ConfigError, match="h_dim = z_dim"):
        build_began((1, 8, 8), 10, BeganOptions(filters=4, h_dim=8, z_dim=6, cs_weight=0.1))
    with pytest.raises(ConfigError, match="unknown arch"):
        build_began((1, 8, 8), 10, BeganOptions(arch="dcgan"))


def test_began_infogan_with_decay_logs_the_lr_factor_and_judges_diversity(tmp_path):
    cfg = from_kwargs(
        {
            "method.name": "began",
            "method.arch": "infogan",
            "method.filters": 4,
            "method.gen_hidden": 16,
            "method.z_dim": 8,
            "method.h_dim": 8,
            "method.cs_weight": 0.1,
            "method.lr_decay_every": 1,
            "method.judge_epochs": 1,
            "method.judge_samples": 64,
            "method.n_samples": 8,
            "steps": 4,
            "batch_size": 16,
            "log_every": 1,
            "eval_every": 2,
            "progress": False,
        }
    )
    result = train_system_config(cfg, tmp_path / "run", data=_toy_data())
    from semireg import rundir

    records = list(rundir.read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert [r["disc/lr_factor"] for r in records if r["kind"] == "train"]  # logged every round
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 2 and all(
        {"classes_covered", "max_class_share", "frechet", "kl_uniform"} <= set(r) for r in evals
    )
    assert 1 <= result.metrics["classes_covered"] <= 10 and result.metrics["frechet_real"] >= 0
    assert (tmp_path / "run" / "diversity.png").exists()


def _began_cfg(steps, run_dir_ckpt=0):
    return from_kwargs(
        {
            "method.name": "began",
            **{f"method.{k}": v for k, v in _tiny_options("began").items()},
            "method.k_init": 0.05,
            "method.lambda_k": 0.05,
            "steps": steps,
            "batch_size": 16,
            "log_every": 1,
            "progress": False,
            "deterministic": True,
            "seed": 3,
        }
    )


def test_k_weights_and_optimizer_states_are_restored_exactly_on_resume(tmp_path):
    data = _toy_data()
    whole = train_system_config(_began_cfg(6), tmp_path / "whole", data=data)
    train_system_config(_began_cfg(3), tmp_path / "split", data=data)  # stops (and checkpoints) at round 3
    from semireg import rundir

    half = rundir.load_checkpoint(tmp_path / "split" / rundir.CHECKPOINT)
    assert half["step"] == 3 and float(half["loss_state"]["balance.k"]) != 0.05  # k moved and was saved
    resumed = train_system_config(_began_cfg(6), tmp_path / "split", data=data, resume=True)
    a = rundir.load_checkpoint(tmp_path / "whole" / rundir.CHECKPOINT)
    b = rundir.load_checkpoint(tmp_path / "split" / rundir.CHECKPOINT)
    assert torch.equal(a["loss_state"]["balance.k"], b["loss_state"]["balance.k"])
    assert torch.equal(a["loss_state"]["balance.m_global"], b["loss_state"]["balance.m_global"])
    for key in a["nets"]:
        assert torch.equal(a["nets"][key], b["nets"][key]), key
    for phase in ("disc", "gen"):
        sa, sb = a["optimizers"][phase]["state"], b["optimizers"][phase]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(sa[i][key], sb[i][key]), (phase, i, key)
    assert whole.metrics["k"] == resumed.metrics["k"]
    # the resumed run's log continues the first half without a gap or a repeat
    steps = [
        r["step"]
        for r in map(__import__("json").loads, (tmp_path / "split" / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "train"
    ]
    assert steps == list(range(1, 7))


# ----------------------------------------------------------------------------- the Python API


def test_fit_system_with_a_user_module_and_a_user_defined_system():
    data = _toy_data(n=64, shape=(1, 8, 8))
    adversary = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 10))
    before = copy.deepcopy(adversary.state_dict())
    result = semireg.fit_system(
        "disentangle",
        (data.x_l, data.y_l),
        steps=3,
        batch_size=16,
        eval_data=data.eval_sets["test"],
        modules={"clf_z": adversary},
        **_tiny_options("disentangle"),
    )
    assert result.system.nets["clf_z"] is adversary
    assert not torch.equal(before["0.weight"], adversary.state_dict()["0.weight"])
    assert 0.0 <= result.metrics["z_probe_mlp"] <= 1.0
    with pytest.raises(ConfigError, match="no module"):
        semireg.fit_system(
            "disentangle",
            (data.x_l, data.y_l),
            steps=1,
            eval_data=data.eval_sets["test"],
            modules={"encoder": adversary},
        )

    # A system of the user's own: two phases, a counter as loss state.
    class Count(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("n", torch.tensor(0))

    def phase_a(nets, batches, state):
        state["count"].n += 1
        t = Terms()
        t.add("mse", F.mse_loss(nets["b"](nets["a"](batches[0].x.flatten(1))), batches[0].x.flatten(1)))
        return t.out()

    nets = nn.ModuleDict({"a": nn.Linear(64, 8), "b": nn.Linear(8, 64)})
    mine = System(
        nets=nets,
        phases=[Phase("a", ("a",), phase_a, steps=2), Phase("b", ("b",), phase_a, steps=1)],
        state=nn.ModuleDict({"count": Count()}),
    )
    out = semireg.fit_system(mine, data.x_l, steps=4, batch_size=16)
    assert int(out.system.state["count"].n) == 4 * 3


def test_each_phase_logs_the_mean_over_its_own_steps(tmp_path):
    def constant(nets, batches, state):
        t = Terms()
        t.add("mse", nets["n"](nets["m"](batches[0].x.flatten(1))).pow(2).mean())
        t.log("one", 1.0)
        return t.out()

    nets = nn.ModuleDict({"m": nn.Linear(64, 2), "n": nn.Linear(2, 2)})
    system = System(
        nets=nets, phases=[Phase("three", ("m",), constant, steps=3), Phase("once", ("n",), constant, steps=1)]
    )
    train_system(_cfg(steps=4, log_every=2), system, _toy_data(), tmp_path / "run")
    records = [r for r in map(__import__("json").loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["three/one"] == 1.0 and r["once/one"] == 1.0 for r in records)


def test_fit_system_checks_what_the_system_needs_before_training():
    data = _toy_data()
    out = semireg.fit_system("began", data.x_l, steps=2, batch_size=16, **_tiny_options("began"))  # images alone
    assert out.metrics["rounds"] == 2 and "classes_covered" not in out.metrics  # no labels: no judge
    with pytest.raises(ConfigError, match="labels"):
        semireg.fit_system("disentangle", data.x_l, steps=1, eval_data=data.eval_sets["test"])
    with pytest.raises(ConfigError, match="held-out test set"):
        semireg.fit_system("disentangle", (data.x_l, data.y_l), steps=1)


# ----------------------------------------------------------------------------- disentangle: keeping z informative


def test_kl_to_the_standard_normal_has_the_closed_form():
    from semireg.systems.disentangle import kl_to_standard_normal

    g = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)  # (5,)
    assert torch.allclose(kl_to_standard_normal(mean, log_var), expected, atol=1e-5)
    assert torch.allclose(kl_to_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))


def test_use_floor_is_a_hinge_on_the_batch_gap_with_its_gradient():
    from semireg.systems.disentangle import floor_term

    gap = torch.tensor([0.01, 0.02, 0.06], requires_grad=True)  # mean 0.03
    term = floor_term(gap, 0.05)
    assert term.mean().item() == pytest.approx(0.02)
    term.mean().backward()
    assert torch.allclose(gap.grad, torch.full((3,), -1.0 / 3))  # below the floor: pushes every gap up
    above = torch.tensor([0.04, 0.08], requires_grad=True)
    term = floor_term(above, 0.05)
    assert term.mean().item() == 0.0
    term.mean().backward()
    assert torch.count_nonzero(above.grad) == 0


def test_the_use_floor_term_is_logged_and_trains(tmp_path):
    from semireg.systems.disentangle import DisentangleOptions, build_disentangle

    data = _toy_data()
    torch.manual_seed(0)
    system = build_disentangle(
        (1, 8, 8), 10, DisentangleOptions(**_tiny_options("disentangle"), variational=True, use_floor=1.0)
    )  # unreachable: always active
    ae = next(p for p in system.phases if p.name == "ae")
    batches = [PhaseBatch(data.x_l[:16], data.y_l[:16]), PhaseBatch(data.x_l[16:32], data.y_l[16:32])]
    out = ae.loss(system.nets, batches, system.state)
    assert float(out["use_floor"]) > 0 and "use_gap" in out
    out["loss"].backward()
    assert system.nets["enc_z"][1].weight.grad.abs().sum() > 0
    # the floor trains Enc_z only: alone (every other term weighted 0), it gives the decoder no gradient
    torch.manual_seed(0)
    system = build_disentangle(
        (1, 8, 8),
        10,
        DisentangleOptions(
            **{**_tiny_options("disentangle"), "w_recon": 0.0, "w_adv": 0.0, "w_swap": 0.0},
            variational=True,
            use_floor=1.0,
        ),
    )
    ae = next(p for p in system.phases if p.name == "ae")
    ae.loss(system.nets, batches, system.state)["loss"].backward()
    assert system.nets["enc_z"][1].weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in system.nets["dec"].parameters())
    with pytest.raises(ConfigError, match="use_floor"):
        build_disentangle((1, 8, 8), 10, DisentangleOptions(use_floor=-1.0))


def test_same_class_partners_share_the_label_and_are_other_images():
    from semireg.systems.disentangle import same_class_partner

    torch.manual_seed(0)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 1, 3])  # class 2 and 3 have one image each
    seen = set()
    for _ in range(200):
        partner = same_class_partner(y)
        assert torch.equal(y[partner], y)
        lonely = (y == 2) | (y == 3)
        assert torch.equal(partner[lonely], torch.arange(len(y))[lonely])  # only itself is left
        assert (partner[~lonely] != torch.arange(len(y))[~lonely]).all()
        seen.add(tuple(partner.tolist()))
    assert len(seen) > 10  # drawn, not fixed


def test_variational_same_class_cycle_terms_enter_the_ae_loss():
    from semireg.systems.disentangle import DisentangleOptions, build_disentangle

    opts = DisentangleOptions(
        **_tiny_options("disentangle"), variational=True, w_kl=0.5, s_from="same-class", w_cycle=2.0
    )
    torch.manual_seed(0)
    system = build_disentangle((1, 8, 8), 10, opts)
    assert system.nets["enc_z"](torch.rand(3, 1, 8, 8)).shape == (3, 2 * opts.dim_z)  # mean and log-variance
    data = _toy_data()
    batches = [PhaseBatch(data.x_l[:16], data.y_l[:16]), PhaseBatch(data.x_l[16:32], data.y_l[16:32])]
    ae = next(p for p in system.phases if p.name == "ae")
    terms = ae.loss(system.nets, batches, system.state)
    total = (
        opts.w_recon * terms["recon"]
        + 0.5 * terms["kl"]
        + opts.w_adv * terms["adv_uniform"]
        + opts.w_swap * terms["ce_swap"]
        + 2.0 * terms["cycle"]
    )
    assert float(terms["loss"].detach()) == pytest.approx(float(total), rel=1e-5)
    assert float(terms["kl"]) > 0 and float(terms["cycle"]) > 0
    with pytest.raises(ConfigError, match="variational"):
        build_disentangle((1, 8, 8), 10, DisentangleOptions(w_kl=1.0))
    with pytest.raises(ConfigError, match="s_from"):
        build_disentangle((1, 8, 8), 10, DisentangleOptions(s_from="other"))


def test_variational_disentangle_reports_probes_on_sampled_z(tmp_path):
    cfg = from_kwargs(
        {
            "method.name": "disentangle",
            **{f"method.{k}": v for k, v in _tiny_options("disentangle").items()},
            "method.variational": True,
            "method.w_kl": 0.1,
            "method.s_from": "same-class",
            "method.w_cycle": 1.0,
            "steps": 3,
            "batch_size": 16,
            "progress": False,
        }
    )
    result = train_system_config(cfg, tmp_path / "run", data=_toy_data())
    m = result.metrics
    for key in ("z_probe_mlp", "z_probe_mlp_sampled", "z_probe_linear_sampled", "z_std", "recon_bce_other_z"):
        assert key in m, key


def test_the_adversary_reads_the_mean_z_when_asked():
    from semireg.systems.disentangle import DisentangleOptions, build_disentangle

    data = _toy_data()
    batch = [PhaseBatch(data.x_l[:16], data.y_l[:16])]
    losses = {}
    for reads in ("sample", "mean"):
        torch.manual_seed(0)
        system = build_disentangle(
            (1, 8, 8),
            10,
            DisentangleOptions(
                **_tiny_options("disentangle"), variational=True, adversary_reads=reads, enc_dropout=0.0
            ),
        )
        system.nets.eval()
        adv = next(p for p in system.phases if p.name == "adv")
        losses[reads] = [float(adv.loss(system.nets, batch, system.state)["ce_z"]) for _ in range(2)]
    assert losses["mean"][0] == losses["mean"][1]  # no sampling: the same z twice
    assert losses["sample"][0] != losses["sample"][1]
    with pytest.raises(ConfigError, match="adversary_reads"):
        build_disentangle((1, 8, 8), 10, DisentangleOptions(adversary_reads="both"))


def test_without_adversary_dropout_the_adversary_reads_the_codes_the_probes_read():
    from semireg.systems.disentangle import DisentangleOptions, adversary_codes, build_disentangle, eval_mode_mean

    data = _toy_data()
    x, y = data.x_l[:16], data.y_l[:16]
    batches = [PhaseBatch(x, y), PhaseBatch(data.x_l[16:32], data.y_l[16:32])]
    losses = {}
    for dropout_seen in (True, False):
        torch.manual_seed(0)
        opts = DisentangleOptions(
            **_tiny_options("disentangle"),
            variational=True,
            adversary_reads="mean",
            enc_dropout=0.5,
            adversary_dropout=dropout_seen,
        )
        system = build_disentangle((1, 8, 8), 10, opts)
        system.nets.train()  # as in training: dropout on
        adv = next(p for p in system.phases if p.name == "adv")
        losses[dropout_seen] = [float(adv.loss(system.nets, batches[:1], system.state)["ce_z"]) for _ in range(2)]
    assert losses[True][0] != losses[True][1]  # each read another dropout draw
    assert losses[False][0] == losses[False][1]  # the evaluation-mode codes, whatever the draw
    # ... the very codes the probes read, and Enc_z's adversarial term trains Enc_z through them
    with torch.no_grad():
        expected = F.cross_entropy(system.nets["clf_z"](eval_mode_mean(system.nets["enc_z"], x, opts)), y)
    assert losses[False][0] == pytest.approx(float(expected), rel=1e-6)
    assert system.nets["enc_z"].training  # left in training mode
    ae = next(p for p in system.phases if p.name == "ae")
    terms = ae.loss(system.nets, batches, system.state)
    with torch.no_grad():
        log_p = F.log_softmax(system.nets["clf_z"](eval_mode_mean(system.nets["enc_z"], x, opts)), dim=1)
    assert float(terms["adv_uniform"].detach()) == pytest.approx(float(-log_p.mean()), rel=1e-5)
    mean, _ = adversary_codes(system.nets["enc_z"], system.state, x, y, opts)  # what that term reads, with a graph
    assert torch.equal(mean.detach(), eval_mode_mean(system.nets["enc_z"], x, opts))
    grads = torch.autograd.grad(mean.sum(), list(system.nets["enc_z"].parameters()))
    assert all(g.abs().sum() > 0 for g in grads)


def test_the_standardized_adversary_cannot_be_fooled_by_shrinking_z():
    from semireg.systems.disentangle import DisentangleOptions, adversary_view

    opts = DisentangleOptions(adversary_reads="mean-standardized")
    mean = torch.randn(64, 16, generator=torch.Generator().manual_seed(0)) * 3 + 1
    view = adversary_view(mean, mean, opts)
    assert torch.allclose(view.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(view.std(0, unbiased=False), torch.ones(16), atol=1e-4)
    # z shrunk a thousandfold towards a constant: the adversary reads the same input as before
    assert torch.allclose(adversary_view(1e-3 * mean + 5.0, mean, opts), view, atol=1e-2)
    assert not torch.allclose(adversary_view(1e-3 * mean, mean, DisentangleOptions(adversary_reads="mean")), mean)


def test_tsne_of_collapsed_codes_draws_a_note_instead_of_crashing(tmp_path):
    # scikit-learn's t-SNE ends the process with a segmentation fault on identical points (a collapsed z),
    # which lost a run's results before the guard.
    from semireg.systems.evaluation import tsne_plot

    tsne_plot(torch.ones(50, 4), torch.arange(50) % 10, tmp_path / "z.png", "collapsed")
    assert (tmp_path / "z.png").stat().st_size > 0


def test_the_z_use_guard_sees_style_in_z_and_nothing_in_a_constant_z():
    from semireg.systems.disentangle import DisentangleOptions, z_use_guard

    g = torch.Generator().manual_seed(0)
    n, k = 1200, 4
    y = torch.arange(n) % k
    style = torch.rand(n, 2, generator=g)  # (n, 2): the image's brightness in two halves, beside its class
    x = torch.zeros(n, 1, 8, 8)
    x[:, 0, :4] = style[:, :1, None] * (0.5 + 0.5 * (y[:, None, None] % 2))
    x[:, 0, 4:] = style[:, 1:, None]
    s = F.one_hot(y, k).float()  # (n, k)
    opts = DisentangleOptions(guard_epochs=20)
    train, test = slice(0, 1000), slice(1000, n)
    used = z_use_guard(s[train], style[train], x[train], s[test], style[test], x[test], opts)
    constant = torch.ones(n, 2)
    unused = z_use_guard(s[train], constant[train], x[train], s[test], constant[test], x[test], opts)
    assert used["z_recon_gain"] > 0.05, used
    assert abs(unused["z_recon_gain"]) < 0.01, unused
    assert unused["recon_bce_fresh_s_only"] == pytest.approx(used["recon_bce_fresh_s_only"])  # same s, same decoder
