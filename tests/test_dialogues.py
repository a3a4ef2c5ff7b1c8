"""Two-channel dialogues: the world, questions and their one right answer, the plan's timing, one tiny build."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchaudio.functional import edit_distance as torchaudio_edit_distance

from slm_course.corpus import SPEAKERS, CorpusError
from slm_course.corpus import dialogues as dlg
from slm_course.corpus.dialogues import (
    BACKCHANNELS,
    KINDS,
    PLACES,
    SYSTEM_SPEAKER,
    WORLD,
    DialogueSet,
    answer,
    answer_candidates,
    ask,
    build_dialogues,
    edit_distance,
    nearest_answer,
    plan_dialogues,
    schedule,
)
from slm_course.corpus.grammar import COLOURS, TOPICS, words_of

SR = 16000
TOL = 1e-3  # planned delays are whole milliseconds, starts whole samples
HELD_OUT = {s.name for s in SPEAKERS if s.held_out}

# --- the world -------------------------------------------------------------------------------


def test_every_object_has_one_colour_property_and_place_shared_by_its_plural():
    for topic, t in TOPICS.items():
        colours = []
        for singular, plural in t["objects"]:
            one, many = WORLD[singular], WORLD[plural]
            assert (one.colour, one.property, one.place) == (many.colour, many.property, many.place)
            assert not one.plural and many.plural and one.topic == many.topic == topic
            assert one.colour in COLOURS and one.property in t["adjectives"] and one.property != "brown"
            assert one.place == PLACES[topic]
            colours.append(one.colour)
        assert len(set(colours)) == len(colours)  # six objects, six colours in each topic
    assert len(WORLD) == 2 * sum(len(t["objects"]) for t in TOPICS.values())


def test_the_world_is_the_same_on_every_call_and_in_a_fresh_process():
    assert dlg._world() == WORLD
    code = ("import json\nfrom dataclasses import asdict\nfrom slm_course.corpus.dialogues import WORLD\n"
            "print(json.dumps({k: asdict(v) for k, v in WORLD.items()}, sort_keys=True))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # set order must play no part
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    fresh = json.loads(out.strip().splitlines()[-1])
    assert fresh == {k: v.__dict__ for k, v in WORLD.items()}


# --- questions and answers ---------------------------------------------------------------------


def test_answers_of_each_kind_singular_and_plural():
    assert answer("what is three plus four?") == "three plus four is seven."
    assert answer("what is ten plus ten?") == "ten plus ten is twenty."
    assert answer("what is eight minus eight?") == "eight minus eight is zero."
    cup = WORLD["cup"]
    assert answer("what colour is the cup?") == f"the cup is {cup.colour}."
    assert answer("what colour are the cups?") == f"the cups are {cup.colour}."
    assert answer("where is the cup?") == "the cup is in the kitchen."
    assert answer("where are the cows?") == "the cows are on the farm."
    assert answer("where is the bench?") == "the bench is in the park."
    cake = WORLD["cake"]
    assert answer(f"is the cake {cake.property}?") == f"yes, the cake is {cake.property}."
    assert answer(f"are the cakes {cake.property}?") == f"yes, the cakes are {cake.property}."
    other = next(a for a in TOPICS["kitchen"]["adjectives"] if a != cake.property)
    assert answer(f"is the cake {other}?") == f"no, the cake is {cake.property}."
    assert answer(f"are the cakes {other}?") == f"no, the cakes are {cake.property}."
    assert answer("Where are the cows") == answer("where are the cows?")  # case and the "?" do not matter


def test_ask_gives_answerable_questions_and_yes_as_often_as_no():
    rng = random.Random(0)
    yes = n_yes_no = 0
    kinds = set()
    for _ in range(1000):
        question, kind = ask(rng)
        kinds.add(kind)
        assert question.endswith("?") and dlg.question_kind(question) == kind
        reply = answer(question)
        assert reply.endswith(".") and reply == reply.lower()
        if kind == "yes_no":
            n_yes_no += 1
            yes += reply.startswith("yes")
    assert kinds == set(KINDS)
    assert 0.4 < yes / n_yes_no < 0.6
    assert all(ask(rng, "colour")[1] == "colour" for _ in range(5))
    with pytest.raises(ValueError, match="choose one of"):
        ask(rng, "who")


# the word positions in which an answer of each kind may differ from the other candidates
ANSWER_SLOTS = {"arithmetic": lambda n: {n - 1}, "colour": lambda n: {n - 1},
                "where": lambda n: {n - 3, n - 1}, "yes_no": lambda n: {0, n - 1}}


def test_candidates_hold_the_right_answer_once_and_differ_only_in_the_answer_words():
    rng = random.Random(1)
    sizes = {"arithmetic": 21, "colour": len(COLOURS), "where": len(PLACES), "yes_no": 4}
    for _ in range(300):
        question, kind = ask(rng)
        candidates = answer_candidates(question)
        assert len(candidates) == sizes[kind] == len(set(candidates))
        assert candidates.count(answer(question)) == 1
        words = [words_of(c) for c in candidates]
        n = len(words[0])
        assert all(len(w) == n for w in words)
        differ = {i for i in range(n) if len({w[i] for w in words}) > 1}
        assert differ == ANSWER_SLOTS[kind](n), (question, candidates)


def test_edit_distance_agrees_with_torchaudio():
    rng = random.Random(2)
    for _ in range(200):
        a = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 8)))
        b = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 8)))
        assert edit_distance(a, b) == torchaudio_edit_distance(list(a), list(b))


def test_nearest_answer_recovers_the_answer_from_a_noisy_transcript():
    cup = WORLD["cups"].colour
    noisy = {
        "what is three plus four?": "three plus for is sevn",
        "what is nine minus two?": "nine minus to is seven",
        "what colour are the cups?": f"The cups are {cup[:-1]}!",
        "where are the cows?": "the cow are on the form",
        f"is the cake {WORLD['cake'].property}?": f"yes the cake is {WORLD['cake'].property[1:]}",
    }
    for question, transcript in noisy.items():
        assert nearest_answer(transcript, answer_candidates(question)) == answer(question), transcript
    assert nearest_answer("b", ["a", "c"]) == "a"  # a tie goes to the first candidate
    with pytest.raises(ValueError, match="at least one candidate"):
        nearest_answer("yes", [])


@pytest.mark.parametrize("question", [
    "who cuts the cake?", "what is eleven plus two?", "what is two minus five?", "what is 3 plus 4?",
    "what colour is the cows?", "where are the cow?", "what colour is the cook?", "is the cake muddy?",
    "is the cake?", "",
])
def test_other_questions_are_refused_with_the_accepted_forms(question):
    with pytest.raises(ValueError, match="Ask one of: 'what is A plus B"):
        answer(question)
    with pytest.raises(ValueError, match="is the NOUN ADJECTIVE"):
        answer_candidates(question)


# --- the plan and its timing -------------------------------------------------------------------


def check_timing(turns: list[dict], duration: float) -> dict:
    """Assert the module docstring's timing rules on turns with channel, kind, start and end (seconds).

    Returns what happened: the gaps from question to answer, and the number of exchanges and backchannels.
    """
    questions = [i for i, t in enumerate(turns) if t["channel"] == "user" and t["kind"] != "backchannel"]
    assert questions[0] == 0 and 1 <= len(questions) <= 2
    assert 0.2 - TOL <= turns[0]["start"] <= 0.6 + TOL
    gaps, backchannels = [], 0
    for n, q in enumerate(questions):
        question, reply = turns[q], turns[q + 1]
        assert reply["channel"] == "system" and reply["kind"] == question["kind"]
        gap = reply["start"] - question["end"]
        assert -0.15 - TOL <= gap <= TOL or 0.1 - TOL <= gap <= 0.5 + TOL, gap
        gaps.append(gap)
        stop = questions[n + 1] if n + 1 < len(questions) else len(turns)
        rest = turns[q + 2 : stop]
        assert len(rest) <= 1
        for bc in rest:
            backchannels += 1
            assert bc["channel"] == "user" and bc["kind"] == "backchannel" and bc["text"] in BACKCHANNELS
            assert 0.3 - TOL <= bc["start"] - reply["start"] <= 1.0 + TOL
        if stop < len(turns):
            pause = turns[stop]["start"] - max(t["end"] for t in turns[q + 1 : stop])
            assert 0.3 - TOL <= pause <= 0.8 + TOL, pause
    assert turns[-1]["channel"] == "system" or turns[-1]["kind"] == "backchannel"
    for channel in ("user", "system"):
        mine = sorted((t["start"], t["end"]) for t in turns if t["channel"] == channel)
        for (_, end), (start, _) in zip(mine, mine[1:]):
            assert end <= start + 1e-9, f"two {channel} turns overlap"
    assert duration == pytest.approx(max(t["end"] for t in turns) + 0.5, abs=TOL)
    return {"gaps": gaps, "exchanges": len(questions), "backchannels": backchannels}


def timed(item: dict, lengths: list[int]) -> tuple[list[dict], float]:
    starts, total = schedule(item["turns"], lengths)
    turns = [{**t, "start": s / SR, "end": (s + n) / SR} for t, s, n in zip(item["turns"], starts, lengths)]
    return turns, total / SR


def test_plan_splits_speakers_and_answers():
    items = plan_dialogues(200, 40, seed=0)
    splits = [it["split"] for it in items]
    assert splits.count("train") == 180 and splits.count("valid") == 20 and splits[200:] == ["test"] * 40
    assert len({it["id"] for it in items}) == len(items)
    for it in items:
        assert it["system"] == SYSTEM_SPEAKER and it["system_style"] == "neutral"
        assert round(165 * 0.9) <= it["system_rate"] <= round(165 * 1.1)  # m00 speaks at 165 words/min
        assert (it["user"] in HELD_OUT) == (it["split"] == "test")
        assert it["user"] != SYSTEM_SPEAKER
        for q, a in zip(it["turns"], it["turns"][1:]):
            if a["channel"] == "system":
                assert q["channel"] == "user" and a["text"] == answer(q["text"])
    assert {it["user_style"] for it in items} == {"neutral", "excited", "calm"}
    assert len({it["user"] for it in items if it["split"] == "train"}) == len(SPEAKERS) - len(HELD_OUT) - 1


def test_plan_timing_follows_the_rules_for_any_turn_lengths():
    rng = np.random.default_rng(0)
    stats = {"gaps": [], "exchanges": [], "backchannels": 0}
    for it in plan_dialogues(2000, 0, seed=1):
        # some answers shorter than the backchannel's delay: then the backchannel comes after the answer
        lengths = [int(rng.uniform(0.2, 3.0) * SR) for _ in it["turns"]]
        got = check_timing(*timed(it, lengths))
        stats["gaps"] += got["gaps"]
        stats["exchanges"].append(got["exchanges"])
        stats["backchannels"] += got["backchannels"]
    n_exchanges = len(stats["gaps"])
    assert 0.45 < np.mean(np.array(stats["exchanges"]) == 2) < 0.55
    assert 0.12 < np.mean(np.array(stats["gaps"]) <= 0) < 0.18  # overlaps
    assert 0.21 < stats["backchannels"] / n_exchanges < 0.29


def test_plan_is_deterministic_and_checks_its_arguments():
    assert plan_dialogues(30, 5, seed=3) == plan_dialogues(30, 5, seed=3)
    assert plan_dialogues(30, 5, seed=3) != plan_dialogues(30, 5, seed=4)
    assert len(plan_dialogues(1, 0)) == 1
    for bad in ({"n_dialogues": 0}, {"n_dialogues": 2.5}, {"n_test": -1}, {"n_test": True}):
        with pytest.raises(ValueError, match="whole number"):
            plan_dialogues(**bad)
    with pytest.raises(ValueError, match="one length per turn"):
        schedule(plan_dialogues(1, 0)[0]["turns"], [])


# --- one tiny build ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> DialogueSet:
    """6 + 2 dialogues, built once (a few seconds)."""
    root = tmp_path_factory.mktemp("dialogues") / "tiny"
    build_dialogues(root, n_dialogues=6, n_test=2, seed=0, workers=1, progress=False)
    return DialogueSet(root)


def test_built_set_has_its_splits_voices_and_right_answers(built):
    assert len(built) == 8 and [len(built.split(s)) for s in ("train", "valid", "test")] == [5, 1, 2]
    assert built.manifest["system"] == SYSTEM_SPEAKER and built.manifest["version"] == dlg.VERSION
    for d in built.dialogues:
        assert d.system == SYSTEM_SPEAKER and (d.user in HELD_OUT) == (d.split == "test")
        for question, reply in d.exchanges:
            assert reply.text == answer(question.text)
        check_timing([t.__dict__ for t in d.turns], d.duration)
    assert built[built.dialogues[3].id] is built[3]
    with pytest.raises(ValueError, match="choose one of train, valid, test"):
        built.split("eval")
    with pytest.raises(KeyError, match="ids look like"):
        built["nope"]


def test_built_turns_have_their_words_inside_and_audio_of_their_length(built):
    for d in built.dialogues:
        for turn in d.turns:
            assert [s.label for s in turn.word_spans] == words_of(turn.text)
            for s in turn.word_spans:
                assert turn.start - TOL <= s.start < s.end <= turn.end + TOL
            wav = built.turn_wav(turn)
            assert wav.dtype == torch.float32 and len(wav) == turn.length
            assert abs(len(wav) / SR - (turn.end - turn.start)) <= 0.02
            assert wav.pow(2).mean().sqrt() > 0.01  # speech, not silence
            # the trailing silence is cut: the turn ends soon after its last word
            assert turn.end - turn.word_spans[-1].end < 0.3


def test_channels_place_each_turn_on_its_channel_and_nothing_else(built):
    for d in built.dialogues:
        stereo = built.channels(d)
        assert stereo.shape == (2, round(d.duration * SR)) and stereo.dtype == torch.float32
        for row, channel in enumerate(("user", "system")):
            outside = torch.ones(stereo.shape[1], dtype=torch.bool)
            for turn in d.turns:
                if turn.channel == channel:
                    s = round(turn.start * SR)
                    assert torch.equal(stereo[row, s : s + turn.length], built.turn_wav(turn))
                    outside[s : s + turn.length] = False
            assert stereo[row, outside].pow(2).mean().sqrt() < 1e-3
    assert torch.equal(built.channels(0), built.channels(built.dialogues[0].id))


def test_load_dialogues_caches_and_rebuilds_a_damaged_copy(built, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    calls = []

    def fake_build(out, n_dialogues, n_test, seed, progress=True):  # copies the tiny build instead of speaking
        calls.append((n_dialogues, n_test, seed))
        shutil.copytree(built.root, out)

    monkeypatch.setattr(dlg, "build_dialogues", fake_build)
    first = dlg.load_dialogues(6, 2, seed=0, progress=False)
    assert calls == [(6, 2, 0)] and first.root.parent == tmp_path and f"v{dlg.VERSION}" in first.root.name
    dlg.load_dialogues(6, 2, seed=0, progress=False)
    assert len(calls) == 1  # from the cache
    audio = first.root / "audio.npy"
    audio.write_bytes(audio.read_bytes()[:1000])  # truncated, as by an interrupted copy
    with pytest.raises(CorpusError, match="corrupted"):
        DialogueSet(first.root)
    again = dlg.load_dialogues(6, 2, seed=0, progress=False)
    assert len(calls) == 2 and "damaged" in capsys.readouterr().out
    assert again.manifest["sha256"] == built.manifest["sha256"]
    with pytest.raises(CorpusError, match="no manifest"):
        DialogueSet(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="whole number"):
        dlg.load_dialogues(0)


def test_the_that_espeak_merges_into_in_the_gets_its_own_span():
    from slm_course.tts import synth_many

    text = "the cup is in the kitchen."
    [(_, words)] = synth_many([[{"text": text, "voice": "en-us+m1"}]])
    assert [w[0] for w in words] == ["the", "cup", "is", "in", "kitchen"]  # eSpeak's own spans: "in" holds "the"
    spans = dlg._word_spans(words, text)
    assert [w for w, _, _ in spans] == words_of(text)
    (_, in_start, in_end), (_, the_start, the_end) = spans[3], spans[4]
    assert in_start < in_end == the_start < the_end == words[3][2]
    assert dlg._word_spans(words, "the cup is at the kitchen.")[3:] == [(w, s, e) for w, s, e, _ in words[3:]]
