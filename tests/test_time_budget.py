"""--time-budget: the fit of the step count (budget.py) and the runs that use it. The runs
use a clock that advances a fixed amount at every reading, so each fit is repeatable."""

import json
import random
import signal
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.tasks.lm import LanguageModelRun
from rnnkit.training import loop
from rnnkit.training.budget import (
    WARM_STEPS,
    BudgetFit,
    Pace,
    evaluations_between,
    fitted_steps,
    pace_starts,
    resumed_max_steps,
    still_to_fit,
    time_to_fit,
)
from rnnkit.training.loop import Interrupted, Trainer

from .test_training import assert_same_weights, losses, small, weights


@dataclass
class Settings:
    """The fields of TrainConfig that the fit reads: a 100 s budget."""
    time_budget: float = 100.0
    max_steps: int = 1000
    eval_every: int = 10_000


def test_evaluations_between_counts_every_eval_step_and_the_last():
    for after in range(0, 30):
        for until in range(after, 60):
            for every in (1, 4, 7, 100):
                steps = {s for s in range(after + 1, until + 1) if s % every == 0}
                if until > after:
                    steps.add(until)
                assert evaluations_between(after, until, every) == len(steps), (after, until)


def brute_force(step, elapsed, budget, per_step, per_eval, every, cap):
    best = step
    for n in range(step + 1, cap + 1):
        cost = (n - step) * per_step + evaluations_between(step, n, every) * per_eval
        if elapsed + cost <= budget:
            best = n
    return best


def test_fitted_steps_is_the_largest_count_within_the_budget():
    rng = random.Random(0)
    for _ in range(400):
        case = (rng.randrange(0, 50), rng.uniform(0, 30), rng.uniform(1, 60),
                rng.uniform(0.01, 2.0), rng.uniform(0, 5), rng.randrange(1, 40),
                rng.randrange(1, 400))
        assert fitted_steps(*case) == brute_force(*case), case


def test_a_spent_budget_ends_the_run_where_it_stands():
    assert fitted_steps(25, 100.0, 60.0, 0.1, 1.0, 10, 1000) == 25
    assert fitted_steps(25, 10.0, 60.0, 0.1, 1.0, 10, 20) == 25  # the cap is behind already


def test_the_pace_is_timed_from_5_to_10_percent_of_the_budget():
    assert not pace_starts(1, 0, 15.0, 300.0)  # the warm-up steps are not over
    assert not pace_starts(40, 0, 14.9, 300.0) and pace_starts(40, 0, 15.0, 300.0)
    assert pace_starts(12, 10, 15.0, 300.0) and not pace_starts(11, 10, 15.0, 300.0)  # resumed
    pace = Pace(step=40, elapsed=15.0)
    assert not time_to_fit(100, 20.0, 300.0, None)
    assert not time_to_fit(500, 29.9, 300.0, pace)  # fast steps: 10% of the budget first
    assert time_to_fit(500, 30.0, 300.0, pace)
    assert time_to_fit(43, 31.0, 300.0, pace)  # slow steps
    assert not time_to_fit(42, 31.0, 300.0, pace)  # but never on fewer than three
    assert pace.per_step(50, 20.0) == pytest.approx(0.5)


def test_the_second_look_times_a_fifth_of_the_budget_after_the_first_fit():
    pace = Pace(step=12, elapsed=31.0)  # the first step after the first fit's evaluation
    assert not time_to_fit(200, 90.0, 300.0, pace, second=True)  # 30%, but 59 s timed
    assert time_to_fit(200, 92.0, 300.0, pace, second=True)
    assert not time_to_fit(14, 200.0, 300.0, pace, second=True)  # never on fewer than three


def test_the_count_is_fitted_at_10_percent_then_fixed_on_the_pace_from_10_to_30():
    cfg = Settings()
    run, fitter, said = SimpleNamespace(step=0, elapsed=0.0, budget_fit=None), BudgetFit(), []

    def step(seconds):
        run.step, run.elapsed = run.step + 1, run.elapsed + seconds
        return fitter.due(cfg, run, 0)

    while not step(1.0):  # 1 s a step: all 100 would fit
        pass
    assert run.step == 10
    cfg = fitter.fit(cfg, run, 0.0, said.append)
    assert cfg.max_steps == 100 and run.budget_fit["final"] is False
    assert still_to_fit(100.0, run.budget_fit) and "second look" in said[-1]
    while not step(1.2):  # the machine got slower after the first fit
        pass
    assert run.step == 28  # 17 steps timed from step 11: 20.4 s, a fifth of the budget
    cfg = fitter.fit(cfg, run, 0.0, said.append)
    assert cfg.max_steps == 28 + int((100 - 10 - 18 * 1.2) / 1.2)  # 85, under the same cap
    assert run.budget_fit == {"seconds": 100.0, "steps": 85, "cap": 1000, "final": True}
    assert not still_to_fit(100.0, run.budget_fit) and "config.json records it" in said[-1]
    assert not any(step(1.2) for _ in range(60))  # no third fit


def test_an_evaluation_inside_the_window_is_not_step_time():
    pace = Pace(step=10, elapsed=20.0)
    for elapsed in (21.0, 22.0, 28.0, 29.0, 30.0):  # the third step held a 5 s evaluation
        pace.add(elapsed)
    assert pace.seconds == [1.0, 1.0, 6.0, 1.0, 1.0] and pace.per_step(15, 30.0) == 1.0
    assert Pace(step=10, elapsed=20.0).per_step(15, 30.0) == 2.0  # nothing added: the mean


def test_a_first_fit_on_a_short_window_gets_a_second_look():
    """A run resumed with another --time-budget past 30% of it fits on its first steps, then
    looks again."""
    run = SimpleNamespace(step=200, elapsed=50.0, budget_fit=None)
    cfg, fitter, said = Settings(), BudgetFit(), []
    while True:
        run.step, run.elapsed = run.step + 1, run.elapsed + 1.0
        if fitter.due(cfg, run, 200):
            break
    assert run.step == 200 + WARM_STEPS + 3
    cfg = fitter.fit(cfg, run, 0.0, said.append)
    assert run.budget_fit["final"] is False and cfg.max_steps == 200 + 50


def test_a_first_fit_with_no_step_left_is_final():
    run = SimpleNamespace(step=20, elapsed=99.5, budget_fit=None)
    fitter = BudgetFit()
    fitter.pace = Pace(step=10, elapsed=95.0)
    assert fitter.fit(Settings(), run, 1.0, lambda _: None).max_steps == 20  # ends now
    assert run.budget_fit["final"] is True  # though it timed a twentieth of the budget


def test_a_resume_keeps_the_fit_unless_the_budget_or_the_steps_change():
    fit = {"seconds": 300.0, "steps": 700, "cap": 1360}
    assert resumed_max_steps(300.0, 1360, fit) == 700  # the preset's cap again
    assert resumed_max_steps(300.0, 700, fit) == 700  # config.json's fitted count
    assert resumed_max_steps(300.0, 2000, fit) == 2000  # an extension
    assert resumed_max_steps(600.0, 700, fit) == 1360  # another budget fits anew, to the cap
    assert resumed_max_steps(600.0, 900, fit) == 900
    assert resumed_max_steps(0.0, 1360, fit) == 1360 and resumed_max_steps(300.0, 50, None) == 50
    assert not still_to_fit(300.0, fit) and still_to_fit(600.0, fit)
    assert still_to_fit(300.0, None) and not still_to_fit(0.0, None)
    first = {**fit, "final": False}  # a run resumed before the second look keeps its count
    assert resumed_max_steps(300.0, 1360, first) == 700 and still_to_fit(300.0, first)


class SteadyClock:
    """time.perf_counter advancing ``tick`` seconds at every reading."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


@pytest.fixture
def steady_clock(monkeypatch):
    clock = SteadyClock(0.01)
    monkeypatch.setattr(loop, "time", clock)
    return clock


def slow_evaluations(monkeypatch, clock: SteadyClock, seconds: float) -> None:
    """Every evaluation of a language model costs ``seconds`` more on ``clock``."""
    evaluate = LanguageModelRun.evaluate

    def slow(self, model, ranks):
        clock.now += seconds
        return evaluate(self, model, ranks)

    monkeypatch.setattr(LanguageModelRun, "evaluate", slow)


BUDGET = {"time_budget": 1.5, "max_steps": 10_000, "eval_every": 1000, "log_every": 5}


def test_a_budgeted_run_fits_its_steps_to_the_clock_and_records_them(tmp_path, hamlet,
                                                                     steady_clock, monkeypatch):
    slow_evaluations(monkeypatch, steady_clock, 0.2)
    out, said = tmp_path / "run", []
    final = rnnkit.train(*small(hamlet, **BUDGET), out=out, log=said.append)
    steps = json.loads((out / "config.json").read_text())["train"]["max_steps"]
    assert final["step"] == steps and 50 < steps < 10_000
    assert json.loads((out / "last.json").read_text())["config"]["train"]["max_steps"] == steps
    # the steps and the final evaluation (0.23 s on this clock) end at the budget, within a
    # few steps (0.014 s each, records included): the clock's readings around the fits' own
    # evaluations and checkpoints are counted approximately
    assert abs(final["elapsed"] + 0.23 - 1.5) <= 0.06
    fits = [line for line in said if line.startswith("time budget")]
    assert len(fits) == 2 and "a second look" in fits[0] and f"so {steps} steps" in fits[1]
    evaluated = [r[0] for r in losses(out) if r[2] is not None]
    # the first fit's evaluation once 10% of the budget was spent, the second look's after
    # 20% more (its evaluation counted, the first one's not), then the last
    assert len(evaluated) == 3 and WARM_STEPS + 3 <= evaluated[0] <= 0.15 * 1.5 / 0.014
    assert evaluated[1] - evaluated[0] >= 0.2 * 1.5 / 0.014 * 0.9 and evaluated[2] == steps

    # twice the budget: about twice the steps (the two evaluations' cost set apart)
    twice = rnnkit.train(*small(hamlet, **{**BUDGET, "time_budget": 3.0}),
                         out=tmp_path / "twice")
    assert twice["step"] > 1.9 * steps + 0.4 / 0.014 * 0.9


def test_the_budget_never_raises_max_steps(tmp_path, hamlet, steady_clock):
    final = rnnkit.train(*small(hamlet, **{**BUDGET, "max_steps": 40}), out=tmp_path / "r")
    assert final["step"] == 40


def test_an_interrupted_budgeted_run_resumes_exactly(tmp_path, hamlet, monkeypatch,
                                                     steady_clock):
    whole = rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "whole")
    final_fit = [r[0] for r in losses(tmp_path / "whole") if r[2] is not None][1]
    one_step = Trainer._one_step

    def interrupt_after_the_fit(self):  # after the final fit, between two records
        rates = one_step(self)
        if self.run.step == final_fit + 2:
            signal.raise_signal(signal.SIGINT)
        return rates

    monkeypatch.setattr(Trainer, "_one_step", interrupt_after_the_fit)
    monkeypatch.setattr(loop, "time", SteadyClock(0.01))  # the same readings, to the last bit
    with pytest.raises(Interrupted):
        rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "_one_step", one_step)
    # resumed with the settings it started from (max_steps is the cap): it keeps its fit,
    # though its clock now reads otherwise
    monkeypatch.setattr(loop, "time", SteadyClock(0.05))
    final = rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "cut", resume=True)
    assert final["step"] == whole["step"]
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert_same_weights(weights(tmp_path / "cut"), weights(tmp_path / "whole"))


def test_a_run_resumed_between_the_two_fits_fits_again_and_ends_on_it(tmp_path, hamlet,
                                                                      monkeypatch, steady_clock):
    first_fit = Trainer._record

    def interrupt_after_the_first_fit(self, rates, evaluate_now=False, fit=False):
        first_fit(self, rates, evaluate_now, fit)
        if fit and not self.run.budget_fit["final"]:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Trainer, "_record", interrupt_after_the_first_fit)
    with pytest.raises(Interrupted):
        rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "_record", first_fit)
    said = []
    final = rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "cut", resume=True,
                         log=said.append)
    assert sum("config.json records it" in line for line in said) == 1
    steps = json.loads((tmp_path / "cut" / "config.json").read_text())["train"]["max_steps"]
    assert final["step"] == steps < 10_000


def test_a_run_that_ends_at_its_first_count_is_fitted_and_extends(tmp_path, hamlet,
                                                                  steady_clock):
    """The cap binds before the second look: the run ends there with its fit final, and a
    larger --max-steps extends it instead of fitting again."""
    first = rnnkit.train(*small(hamlet, **{**BUDGET, "max_steps": 20}), out=tmp_path / "r")
    assert first["step"] == 20  # the second look would come at about step 34
    longer = rnnkit.train(*small(hamlet, **{**BUDGET, "max_steps": 200}), out=tmp_path / "r",
                          resume=True)
    assert longer["step"] == 200  # past what the rest of the budget would fit


def test_config_json_gets_the_final_count_only_after_last_pt_holds_it(tmp_path, hamlet,
                                                                       monkeypatch):
    monkeypatch.setattr(loop, "time", SteadyClock(0.01))
    whole = rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "whole")
    write = Trainer._write_config

    def dies_before_the_final_count(self):
        if self.run.budget_fit is not None and self.run.budget_fit["final"]:
            raise KeyboardInterrupt  # killed between last.pt and config.json
        return write(self)

    monkeypatch.setattr(loop, "time", SteadyClock(0.01))
    monkeypatch.setattr(Trainer, "_write_config", dies_before_the_final_count)
    with pytest.raises(KeyboardInterrupt):
        rnnkit.train(*small(hamlet, **BUDGET), out=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "_write_config", write)
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert config["train"]["max_steps"] == 10_000  # the cap, not the first fit's count
    assert main(["train", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert losses(tmp_path / "cut") == losses(tmp_path / "whole")
    assert losses(tmp_path / "cut")[-1][0] == whole["step"]


def test_the_command_line_resumes_from_config_json_and_extends(tmp_path, hamlet,
                                                               steady_clock, capsys):
    out = tmp_path / "run"
    flags = ["train", "--data", str(hamlet), "--out", str(out), "--preset", "tiny",
             "--seq-length", "16", "--batch-size", "4", "--eval-every", "1000"]
    assert main([*flags, "--time-budget", "1", "--max-steps", "5000"]) == 0
    steps = json.loads((out / "config.json").read_text())["train"]["max_steps"]
    assert losses(out)[-1][0] == steps < 5000
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert f"pass --time-budget 0 --max-steps N (its --time-budget 1 fitted {steps} steps)" \
        in capsys.readouterr().err
    # a larger budget fits again, from the cap the first fit started from
    assert main(["train", "--out", str(out), "--resume", "--time-budget", "2"]) == 0
    refitted = json.loads((out / "config.json").read_text())["train"]["max_steps"]
    assert losses(out)[-1][0] == refitted > steps
    assert main(["train", "--out", str(out), "--resume", "--max-steps", str(refitted + 10)]) == 0
    assert losses(out)[-1][0] == refitted + 10


def test_a_negative_budget_is_one_error_line(tmp_path, hamlet, capsys):
    code = main(["train", "--data", str(hamlet), "--out", str(tmp_path / "r"),
                 "--time-budget", "-5"])
    assert code != 0 and not (tmp_path / "r").exists()
    assert "time_budget must be >= 0" in capsys.readouterr().err


def test_a_rollback_before_the_fit_times_the_pace_again():
    cfg, fitter = SimpleNamespace(time_budget=100.0), BudgetFit()
    run = SimpleNamespace(step=0, elapsed=0.0, budget_fit=None)
    for step in range(1, 8):  # 1 s a step: the pace starts at step 5 (5% of the budget)
        run.step, run.elapsed = step, float(step)
        assert not fitter.due(cfg, run, 0)
    assert (fitter.pace.step, fitter.pace.elapsed) == (5, 5.0)
    run.step, run.elapsed = 1, 8.0  # rolled back to step 0, then one step
    assert not fitter.due(cfg, run, 0) and fitter.pace is None
    for step in range(2, 7):  # the steps done again are timed anew
        run.step, run.elapsed = step, 7.0 + step
        fitter.due(cfg, run, 0)
    assert (fitter.pace.step, fitter.pace.elapsed) == (2, 9.0)


def test_config_json_keeps_the_cap_until_last_pt_holds_the_fit(tmp_path, hamlet,
                                                                steady_clock, monkeypatch):
    save = Trainer._save

    def dies_at_the_fit(self, name, with_trainer):
        if name == "last" and self.run.budget_fit is not None:
            raise KeyboardInterrupt  # killed while the fit's last.pt is written
        return save(self, name, with_trainer)

    monkeypatch.setattr(Trainer, "_save", dies_at_the_fit)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        rnnkit.train(*small(hamlet, **BUDGET), out=out)
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] == 10_000
    monkeypatch.setattr(Trainer, "_save", save)
    assert main(["train", "--out", str(out), "--resume"]) == 0  # fits again, from the cap
    steps = json.loads((out / "config.json").read_text())["train"]["max_steps"]
    assert 50 < steps < 10_000 and losses(out)[-1][0] == steps


class SlowingClock(SteadyClock):
    """A SteadyClock whose tick doubles after ``at`` seconds: a machine that gets busier
    after the final fit (30% of the budget)."""

    def __init__(self, tick: float, at: float):
        super().__init__(tick)
        self.at, self.slow = at, 2 * tick

    def perf_counter(self) -> float:
        if self.now > self.at:
            self.tick = self.slow
        return super().perf_counter()


@pytest.mark.parametrize("max_time", [0.0, 1.55])
def test_max_time_holds_the_budget_of_a_run_that_slows_after_its_fit(tmp_path, hamlet,
                                                                     monkeypatch, max_time):
    """The 5-minute preset's guard: the fit assumes its pace holds, so a run that slows down
    later ends past the budget; --max-time stops it at the clock instead."""
    clock = SlowingClock(0.01, at=0.6 * BUDGET["time_budget"])
    monkeypatch.setattr(loop, "time", clock)
    final = rnnkit.train(*small(hamlet, **BUDGET, max_time=max_time), out=tmp_path / "r")
    fitted = json.loads((tmp_path / "r" / "config.json").read_text())["train"]["max_steps"]
    if max_time:
        assert final["elapsed"] <= max_time + 0.05 and final["step"] < fitted
    else:
        assert final["elapsed"] > 1.2 * BUDGET["time_budget"] and final["step"] == fitted
