"""VT alarm triage: synthetic rhythms with known answers, the never-read answer line,
the CLI's JSON, and a floor on the challenge score over a fixed handful of records.

Tests that need the 2015 challenge records read them from ``$VIGIL_DATA_DIR/challenge2015``
(default ``/work/shared/data``) and fail, not skip, when they are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from detectors.training.vt_eval import challenge_score, data_dir, load_alarm_record, read_alarm_type, score
from detectors.ventricular import ecg_ventricular_evidence
from detectors.vt_triage import VT_ALARM, TriageParams, triage_alarm
from vigil.triage_cli import run

FS = 250.0
DURATION_S = 300.0
FloatArray = npt.NDArray[np.float64]


def _gauss(t: FloatArray, centre: float, width: float, height: float) -> FloatArray:
    return np.asarray(height * np.exp(-0.5 * ((t - centre) / width) ** 2), dtype=np.float64)


def _normal_beat(t: FloatArray) -> FloatArray:
    """Narrow conducted beat, t in s from the R peak: small Q, sharp R, S, then a T wave."""
    return (_gauss(t, -0.025, 0.008, -0.1) + _gauss(t, 0.0, 0.010, 1.0) + _gauss(t, 0.025, 0.010, -0.25)
            + _gauss(t, 0.25, 0.04, 0.3))


def _ventricular_beat(t: FloatArray) -> FloatArray:
    """Wide ectopic beat: a 160 ms biphasic complex with a discordant T wave."""
    return _gauss(t, -0.03, 0.035, -0.9) + _gauss(t, 0.05, 0.035, 1.4) + _gauss(t, 0.22, 0.05, -0.4)


def _rhythm(vt_from_s: float | None, seed: int = 7) -> dict[str, FloatArray]:
    """Leads II and V plus ABP: sinus at about 75 bpm; from ``vt_from_s`` on, a wide-complex
    run at 180 bpm during which the arterial pulse all but disappears."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(DURATION_S * FS)) / FS
    ii, v, abp = np.zeros_like(t), np.zeros_like(t), np.full_like(t, 80.0)
    beat = 0.5
    while beat < DURATION_S:
        ventricular = vt_from_s is not None and beat >= vt_from_s
        near = np.abs(t - beat) < 0.6
        shape = _ventricular_beat(t[near] - beat) if ventricular else _normal_beat(t[near] - beat)
        ii[near] += shape
        v[near] += -0.8 * shape if ventricular else -0.7 * _normal_beat(t[near] - beat) + 0.1 * shape
        after = (t >= beat + 0.1) & (t < beat + 1.2)
        pulse = 4.0 if ventricular else 40.0
        abp[after] += pulse * np.exp(-(t[after] - beat - 0.1) / 0.35) * (1 - np.exp(-(t[after] - beat - 0.1) / 0.04))
        beat += 1 / 3 if ventricular else 0.8 + 0.03 * rng.standard_normal()
    ii += 0.02 * rng.standard_normal(t.shape) + 0.1 * np.sin(2 * np.pi * 0.25 * t)
    v += 0.02 * rng.standard_normal(t.shape)
    abp += 0.5 * rng.standard_normal(t.shape)
    return {"II": ii, "V": v, "ABP": abp, "RESP": np.sin(2 * np.pi * 0.25 * t)}


def test_sinus_rhythm_with_a_steady_pulse_is_a_false_alarm() -> None:
    decision = triage_alarm(_rhythm(None), sampling_rate=FS, alarm_type=VT_ALARM)
    assert decision.true_alarm is False
    assert {e.lead for e in decision.leads} == {"II", "V"}
    assert all(e.usable and e.cluster == 0 for e in decision.leads), decision.summary()


def test_sustained_wide_complex_run_without_pulse_is_a_true_alarm() -> None:
    decision = triage_alarm(_rhythm(292.0), sampling_rate=FS, alarm_type=VT_ALARM)
    assert decision.true_alarm is True, decision.summary()
    lead_ii = next(e for e in decision.leads if e.lead == "II")
    assert lead_ii.cluster >= 5 and lead_ii.fastest_bpm > 150
    abp = next(p for p in decision.pulses if p.channel == "ABP")
    assert abp.min_ratio < 0.3


def test_samples_after_the_alarm_onset_are_ignored() -> None:
    """A VT that starts after the onset must not confirm the alarm."""
    channels = _rhythm(292.0)
    onset = round(290.0 * FS)
    decision = triage_alarm(channels, sampling_rate=FS, alarm_type=VT_ALARM, alarm_index=onset)
    assert decision.true_alarm is False, decision.summary()


def test_a_short_ectopic_burst_is_not_vt() -> None:
    """Three wide beats (the VT definition needs five) in the window."""
    decision = triage_alarm(_rhythm(299.0), sampling_rate=FS, alarm_type=VT_ALARM)
    assert decision.true_alarm is False, decision.summary()


def test_unreadable_ecg_falls_back_on_the_pulse() -> None:
    steady = _rhythm(None)
    steady["II"][:] = np.nan
    steady["V"][:] = 0.0
    decided = triage_alarm(steady, sampling_rate=FS, alarm_type=VT_ALARM)
    assert not any(e.usable for e in decided.leads)
    assert decided.true_alarm is False and "pulse unchanged" in decided.reason

    lost = _rhythm(292.0)
    lost["II"][:] = np.nan
    lost["V"][:] = 0.0
    assert triage_alarm(lost, sampling_rate=FS, alarm_type=VT_ALARM).true_alarm is True


@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_nothing_readable_lets_the_alarm_stand(fill: float) -> None:
    channels = {"II": np.full(75000, fill), "V": np.full(75000, fill), "PLETH": np.full(75000, fill)}
    decision = triage_alarm(channels, sampling_rate=FS, alarm_type=VT_ALARM)
    assert decision.true_alarm is True


def test_short_snapshot_gives_no_evidence() -> None:
    evidence = ecg_ventricular_evidence(np.zeros(round(50 * FS)), sampling_rate=FS, lead="II")
    assert not evidence.usable and "shorter" in evidence.reason


def test_other_alarm_types_are_not_triaged() -> None:
    decision = triage_alarm(_rhythm(None), sampling_rate=FS, alarm_type="Asystole")
    assert decision.true_alarm is True and decision.leads == ()


@pytest.mark.parametrize("kwargs", [{"min_cluster": 0}, {"min_consistency": 1.5}, {"pulse_band": (1.2, 1.5)}])
def test_params_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TriageParams(**kwargs)  # type: ignore[arg-type]


def test_score_formula() -> None:
    s = score([("a", True, True), ("b", True, False), ("c", False, False), ("d", False, True)])
    assert (s.tp, s.fn, s.tn, s.fp) == (1, 1, 1, 1)
    assert s.value == pytest.approx(100 * 2 / (2 + 1 + 5))


# --- on the challenge records -----------------------------------------------------------

@pytest.fixture(scope="module")
def records() -> Path:
    root = data_dir()
    if not (root / "ALARMS.csv").is_file():
        pytest.fail(f"challenge 2015 records missing: no {root / 'ALARMS.csv'} (set VIGIL_DATA_DIR)")
    return root


def _copy_record(src: Path, dst: Path, answer: str | None) -> Path:
    """Copy a record into ``dst`` with its answer comment replaced (or dropped when None)."""
    shutil.copy(src.with_suffix(".mat"), dst / src.with_suffix(".mat").name)
    lines = src.with_suffix(".hea").read_text().splitlines()
    comments = [i for i, line in enumerate(lines) if line.startswith("#")]
    assert len(comments) >= 2, "expected an alarm type and an answer comment"
    if answer is None:
        del lines[comments[1]]
    else:
        lines[comments[1]] = f"#{answer}"
    (dst / src.with_suffix(".hea").name).write_text("\n".join(lines) + "\n")
    return dst / src.name


@pytest.mark.parametrize("name", ["v100s", "v369l"])
def test_cli_never_reads_the_answer(name: str, records: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for i, answer in enumerate(["True alarm", "False alarm", None, "garbage that is not an answer"]):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert run(str(_copy_record(records / name, folder, answer)), True) == 0
        outputs.append(capsys.readouterr().out)
    assert run(str(records / name), True) == 0
    outputs.append(capsys.readouterr().out)
    assert len(set(outputs)) == 1, outputs


def test_alarm_type_is_the_first_comment_only(tmp_path: Path) -> None:
    header = tmp_path / "x.hea"
    header.write_text("x 1 250 75000\nx.mat 16+24 200/mV 16 0 0 0 0 II\n#Ventricular_Tachycardia\n#True alarm\n")
    assert read_alarm_type(header) == VT_ALARM


def test_cli_json_shape(records: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(records / "v100s"), True) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"alarm", "true_alarm"}
    assert out["alarm"] == VT_ALARM and isinstance(out["true_alarm"], bool)


def test_cli_missing_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(tmp_path / "nothing"), True) == 2
    assert "no WFDB record" in capsys.readouterr().err


def test_loader_stops_at_the_alarm_onset(records: Path) -> None:
    rec = load_alarm_record(records / "v101l")  # a "long" record: 30 s continue after the alarm
    assert rec.alarm_type == VT_ALARM
    assert all(x.shape[0] == round(300 * rec.sampling_rate) for x in rec.channels.values())


# The first five true and first five false alarms by name of the tuning half; a
# regression floor, not an accuracy figure (those come from `challenge_score`).
HANDFUL = ("v133l", "v199l", "v369l", "v522s", "v559l", "v100s", "v102s", "v128s", "v153l", "v164s")


def test_score_floor_on_a_handful(records: Path, tmp_path: Path) -> None:
    keep = set(HANDFUL)
    lines = (records / "ALARMS.csv").read_text().splitlines()
    (tmp_path / "ALARMS.csv").write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ln.split(",")[0] in keep)]))
    for name in HANDFUL:
        for suffix in (".hea", ".mat"):
            (tmp_path / f"{name}{suffix}").symlink_to(records / f"{name}{suffix}")
    result = challenge_score(tmp_path, verbose=False)
    overall = result["in_sample"]
    assert isinstance(overall, dict)
    assert overall["n"] == len(HANDFUL)
    assert overall["fn"] == 0, overall
    assert overall["score"] >= 80.0, overall
    cv = result["cv"]  # every record here is out of fold once; the held-out half is empty
    assert isinstance(cv, dict) and "interval" not in result["test"]  # type: ignore[operator]
    low, high = cv["interval"]
    assert low < cv["score"] <= high, cv  # the records that went wrong are drawn 0 to several times


@pytest.mark.parametrize("module", ["detectors.ventricular", "detectors.vt_triage"])
def test_triage_is_pure(module: str) -> None:
    """No I/O stack, no record reader, no composition root behind the decision code."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = {m.split(".")[0] for m in json.loads(done.stdout)}
    assert loaded & {"faust", "aiokafka", "asyncpg", "psycopg", "asyncio", "websockets", "wfdb", "vigil"} == set()
