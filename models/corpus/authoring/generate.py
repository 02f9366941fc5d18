#!/usr/bin/env python3
"""Expand the team's seed templates into the training corpus, one TSV file per intent.

Every seed is one *template family*. A family's lines are its slot fillings plus the
ways people really say them to a car: ASR-style lowercase without punctuation,
fillers and false starts, typos, long rambling lead-ins, and frustrated, scared or
happy wrappings. The family id is written on every line so that splits keep families
apart. The output is deterministic (fixed seed), and the TSV files are the corpus of
record: this script only documents and reproduces how they were written.

Usage: python3 models/corpus/authoring/generate.py   (rewrites models/corpus/*.tsv)
"""
import itertools
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from slots import SLOTS  # noqa: E402
from seeds_vehicle import SEEDS as VEHICLE  # noqa: E402
from seeds_service import SEEDS as SERVICE  # noqa: E402
from seeds_oos import OOS_SEEDS, OOS_SLOTS  # noqa: E402
from seeds_more import MORE  # noqa: E402
from seeds_extra import EXTRA, OOS_EXTRA  # noqa: E402
from seeds_round3 import ROUND3, OOS_ROUND3  # noqa: E402
from seeds_round4 import ROUND4, OOS_ROUND4, SLOTS4  # noqa: E402
from seeds_round5 import ROUND5, OOS_ROUND5, SLOTS5  # noqa: E402
from seeds_round6 import OOS_ROUND6  # noqa: E402
from seeds_round7 import ROUND7, OOS_ROUND7, SLOTS7  # noqa: E402
from seeds_round8 import ROUND8, OOS_ROUND8, SLOTS8  # noqa: E402
from seeds_round9 import OOS_ROUND9  # noqa: E402

ALL_SLOTS = {**SLOTS, **OOS_SLOTS, **SLOTS4, **SLOTS5, **SLOTS7, **SLOTS8}
SENT = {"n": "neutral", "-": "negative", "+": "positive"}
DIALOGUE = {"greeting", "goodbye", "affirm", "deny", "cancel", "repeat"}

FILLERS = ["um", "uh", "so", "okay so", "hey", "hey car", "er", "well", "like", "hmm", "right so", "ok um"]
POLITE = ["can you tell me", "could you tell me", "do you know", "i was wondering", "quick question",
          "can you check", "tell me", "i need to know", "any idea", "i'd like to know", "please tell me"]
RAMBLE = ["so i was just driving along and i wanted to ask", "my wife was asking me and i honestly don't know",
          "okay this might be a dumb question but", "before we get on the motorway i just want to know",
          "i've had this car a few weeks now and i still don't know", "sorry to bother you but",
          "i was meaning to ask earlier", "we're heading out on a long trip tomorrow and",
          "the kids keep asking and i've no idea", "this is a rental so i'm not sure, but"]
NEG_PRE = ["ugh", "oh for god's sake", "seriously", "damn it", "this is so annoying", "i'm getting really frustrated",
           "great just great", "what the hell", "come on", "oh no", "i'm freaking out a bit", "this stupid car",
           "i'm so fed up", "unbelievable", "i'm scared", "i'm panicking", "i'm really worried", "for crying out loud",
           "argh", "not again", "why does this always happen to me", "this is a nightmare", "i'm so stressed",
           "honestly this is ridiculous", "i hate this", "bloody hell", "i'm nervous", "oh crap", "this is terrible"]
NEG_POST = ["this is driving me mad", "i'm so annoyed", "this is ridiculous", "i'm really worried", "and i'm freaking out",
            "this car is useless", "i'm sick of this", "it's so frustrating", "hurry up", "i'm scared",
            "this is the worst", "why is this so hard", "it's doing my head in", "i'm losing my mind",
            "and i'm panicking", "i'm furious", "this is a joke", "i'm really anxious about it", "so stupid"]
POS_PRE = ["awesome", "brilliant", "lovely", "you're the best", "thanks so much", "nice one", "i love this car",
           "this is great", "wonderful", "happy days", "fantastic", "oh cool", "yay"]
POS_POST = ["thank you so much", "you're a star", "love it", "that's amazing", "thanks you're brilliant",
            "i'm loving this car", "great job", "much appreciated", "this is so helpful", "cheers mate",
            "that's fantastic", "you're awesome", "what a great car", "so happy with this"]
NEG_SHORT = ["ugh", "argh", "oh come on", "for god's sake", "damn it", "ugh whatever", "oh for crying out loud"]
POS_SHORT = ["great", "lovely", "brilliant", "awesome", "perfect", "wonderful", "fantastic", "excellent"]

MAX_FILLINGS = 4
MAX_FILLINGS_OOS = 6


def fillings(template, rng, limit=MAX_FILLINGS):
    names = re.findall(r"\{(\w+)\}", template)
    if not names:
        return [template]
    pools = [ALL_SLOTS[n] for n in names]
    combos = list(itertools.product(*pools))
    rng.shuffle(combos)
    out = []
    for combo in combos[: limit * 3]:
        text = template
        for value in combo:
            text = re.sub(r"\{\w+\}", value, text, count=1)
        if text not in out:
            out.append(text)
        if len(out) == limit:
            break
    return out


def typo(text, rng):
    words = text.split()
    idx = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not idx:
        return None
    i = rng.choice(idx)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    elif kind == 1:
        w = w[:j] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def false_start(text, rng):
    words = text.split()
    if len(words) < 3:
        return None
    k = rng.choice([1, 2])
    return " ".join(words[:k]) + " " + rng.choice(["- ", "uh ", "i mean ", ""]) + text


def written(text, rng):
    """Some recognisers capitalise and punctuate; most of our lines stay ASR-style."""
    if rng.random() < 0.35:
        end = "?" if re.match(r"^(how|what|where|when|why|is|are|do|does|can|will|which|who|am|any|should|could)\b", text) else "."
        return text[0].upper() + text[1:] + end
    return text


def variants(intent, sentiment, text, rng):
    out = [(written(text, rng), sentiment)]
    short = intent in DIALOGUE or len(text.split()) <= 2
    if rng.random() < 0.45:
        out.append((f"{rng.choice(FILLERS)} {text}", sentiment))
    if not short and intent != "out_of_scope_dialogue" and rng.random() < 0.3:
        out.append((f"{rng.choice(POLITE)} {text}", sentiment))
    if not short and rng.random() < 0.18:
        out.append((f"{rng.choice(RAMBLE)} {text}", sentiment))
    if rng.random() < 0.3:
        t = typo(text, rng)
        if t:
            out.append((t, sentiment))
    if not short and rng.random() < 0.15:
        t = false_start(text, rng)
        if t:
            out.append((t, sentiment))
    # Feelings: the same request, frustrated, scared or pleased.
    if sentiment != "positive" and rng.random() < (0.45 if intent == "emergency" else 0.3):
        if short:
            out.append((f"{rng.choice(NEG_SHORT)} {text}", "negative"))
        elif rng.random() < 0.5:
            out.append((f"{rng.choice(NEG_PRE)} {text}", "negative"))
        else:
            out.append((f"{text} {rng.choice(NEG_POST)}", "negative"))
    if sentiment == "neutral" and intent not in ("emergency", "complaint") and rng.random() < 0.24:
        if short:
            out.append((f"{text} {rng.choice(POS_SHORT)}" if intent in ("affirm",) else f"{rng.choice(POS_SHORT)} {text}", "positive"))
        elif rng.random() < 0.5:
            out.append((f"{rng.choice(POS_PRE)} {text}", "positive"))
        else:
            out.append((f"{text} {rng.choice(POS_POST)}", "positive"))
    return out


def norm(text):
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def main():
    rng = random.Random(20261124)
    root = Path(__file__).resolve().parent.parent
    seeds = {**VEHICLE, **SERVICE, "out_of_scope": OOS_SEEDS}
    for intent, extra in list(MORE.items()) + list(EXTRA.items()) + list(ROUND3.items()) + list(ROUND4.items()) + list(ROUND5.items()):
        seeds[intent] = seeds[intent] + extra
    seeds["out_of_scope"] = seeds["out_of_scope"] + OOS_EXTRA + OOS_ROUND3 + OOS_ROUND4 + OOS_ROUND5 + OOS_ROUND6
    # Later rounds draw from a generator of their own per intent, so that adding a
    # round leaves every line of the earlier ones (and their split) as it was.
    first_later = {intent: len(seeds[intent]) for intent in seeds}
    for later in ({**ROUND7, "out_of_scope": OOS_ROUND7}, {**ROUND8, "out_of_scope": OOS_ROUND8}, {"out_of_scope": OOS_ROUND9}):
        for intent, extra in later.items():
            seeds[intent] = seeds[intent] + extra
    seen = set()
    for intent in sorted(seeds):
        rows = []
        later_rng = random.Random(f"round7/{intent}")
        for i, (s, template) in enumerate(seeds[intent]):
            family = f"{intent}/{i:03d}"
            r = rng if i < first_later[intent] else later_rng
            for text in fillings(template, r, MAX_FILLINGS_OOS if intent == "out_of_scope" else MAX_FILLINGS):
                for line, sentiment in variants(intent, SENT[s], text, r):
                    key = norm(line)
                    if key in seen:
                        continue
                    seen.add(key)
                    rows.append((line, sentiment, family))
        path = root / f"{intent}.tsv"
        with path.open("w") as f:
            f.write(f"# intent: {intent}\n# text<TAB>sentiment<TAB>template family\n")
            for line, sentiment, family in rows:
                f.write(f"{line}\t{sentiment}\t{family}\n")
        counts = {k: sum(1 for r in rows if r[1] == k) for k in ("negative", "neutral", "positive")}
        print(f"{intent:20} {len(rows):5}  {counts}")


if __name__ == "__main__":
    main()
