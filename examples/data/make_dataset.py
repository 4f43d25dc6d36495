"""Generate the small review-sentiment dataset shipped with the examples.

Every sentence is built from templates and word lists written for this project (no corpus is copied).
The generator is seeded and deterministic: running it again rewrites ``train.csv`` and
``validation.csv`` byte for byte.

What makes it non-trivial (so that validation accuracy stays clearly below 100%):

* **label noise**: a fixed fraction of labels (``NOISE_RATE``, 8%) is flipped in both splits, the way
  real annotations disagree with the text now and then;
* **hard cases**: negation ("not bad at all"), contrast ("the food was great, but the service was
  painfully slow"), sarcasm ("Oh wonderful, it broke after two days"), comparatives, and lukewarm
  reviews whose label depends on a faint lean or, for a share of them, on nothing in the text at all;
* **neutral filler** and varying length (one to four sentences).

Usage::

    python examples/data/make_dataset.py            # rewrites examples/data/{train,validation}.csv
    python examples/data/make_dataset.py --out DIR  # somewhere else
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

SEED = 20240611
NOISE_RATE = 0.08
SPLIT_SIZES = {"train": 2000, "validation": 600}

# ---------------------------------------------------------------------------------------------------
# Word lists. Each domain has product nouns and aspects; an aspect is (text, is_plural).
# ---------------------------------------------------------------------------------------------------
DOMAINS: dict[str, dict[str, list]] = {
    "restaurant": {
        "products": ["restaurant", "place", "bistro", "diner", "cafe", "pizzeria", "noodle bar"],
        "aspects": [
            ("food", False),
            ("service", False),
            ("waiter", False),
            ("pasta", False),
            ("coffee", False),
            ("dessert", False),
            ("portions", True),
            ("prices", True),
            ("atmosphere", False),
            ("music", False),
            ("staff", True),
            ("menu", False),
            ("wine list", False),
            ("curry", False),
        ],
        "good_events": [
            "our table was ready straight away",
            "the staff remembered our names",
            "the chef came out to say hello",
            "they found us a quiet table at short notice",
            "the food came out hot and fast",
        ],
        "bad_events": [
            "we waited forty minutes for a table",
            "my food arrived cold",
            "they forgot our starters",
            "the bill had two extra drinks on it",
            "we found a hair in the soup",
        ],
    },
    "electronics": {
        "products": [
            "phone",
            "laptop",
            "pair of headphones",
            "speaker",
            "charger",
            "tablet",
            "smartwatch",
            "camera",
            "monitor",
            "keyboard",
        ],
        "aspects": [
            ("battery", False),
            ("screen", False),
            ("sound", False),
            ("build quality", False),
            ("setup", False),
            ("software", False),
            ("keys", True),
            ("fan", False),
            ("microphone", False),
            ("bluetooth connection", False),
            ("buttons", True),
            ("display", False),
            ("speakers", True),
        ],
        "good_events": [
            "it survived a drop onto concrete",
            "the battery lasts two full days",
            "everything was set up in five minutes",
            "it still works perfectly after a year",
            "it charges in under an hour",
        ],
        "bad_events": [
            "it broke within a month",
            "it stopped charging after ten days",
            "it overheats after twenty minutes",
            "the screen cracked on its own",
            "it keeps disconnecting every few minutes",
        ],
    },
    "hotel": {
        "products": ["hotel", "room", "resort", "guesthouse", "hostel", "apartment"],
        "aspects": [
            ("bed", False),
            ("shower", False),
            ("breakfast", False),
            ("location", False),
            ("front desk", False),
            ("check-in", False),
            ("view", False),
            ("wifi", False),
            ("pool", False),
            ("pillows", True),
            ("cleaners", True),
            ("walls", True),
            ("air conditioning", False),
        ],
        "good_events": [
            "they upgraded our room for free",
            "check-in took two minutes",
            "they let us keep the room until late afternoon",
            "the room was spotless when we arrived",
            "the staff booked us a taxi at 5 am",
        ],
        "bad_events": [
            "the room smelled of smoke",
            "the shower ran cold every morning",
            "they lost our booking",
            "we were woken by construction at 7 am",
            "the sheets had stains on them",
        ],
    },
    "shop": {
        "products": ["order", "online shop", "store", "delivery company", "seller"],
        "aspects": [
            ("delivery", False),
            ("packaging", False),
            ("customer support", False),
            ("refund", False),
            ("returns process", False),
            ("checkout", False),
            ("tracking", False),
            ("courier", False),
            ("instructions", True),
            ("staff", True),
        ],
        "good_events": [
            "it arrived a day early",
            "they replaced it with no questions asked",
            "the refund came through the same day",
            "support answered within the hour",
            "they threw in a free gift",
        ],
        "bad_events": [
            "it arrived two weeks late",
            "the box was crushed",
            "half the order was missing",
            "they charged me twice",
            "nobody answered my emails",
        ],
    },
    "app": {
        "products": ["app", "subscription", "service", "website", "game", "program"],
        "aspects": [
            ("interface", False),
            ("latest update", False),
            ("login", False),
            ("sync", False),
            ("notifications", True),
            ("search", False),
            ("pricing", False),
            ("ads", True),
            ("dark mode", False),
            ("loading times", True),
            ("help pages", True),
        ],
        "good_events": [
            "the update fixed every bug I had",
            "support answered within the hour",
            "it syncs across all my devices instantly",
            "it hasn't crashed once in months",
            "setting it up took two minutes",
        ],
        "bad_events": [
            "it crashes every time I open it",
            "the update deleted all my settings",
            "they charged me twice",
            "it logs me out every day",
            "it drains my battery in a couple of hours",
        ],
    },
    "clothing": {
        "products": ["jacket", "pair of shoes", "pair of jeans", "backpack", "sweater", "raincoat", "dress"],
        "aspects": [
            ("fit", False),
            ("fabric", False),
            ("stitching", False),
            ("colour", False),
            ("zip", False),
            ("sizing", False),
            ("pockets", True),
            ("laces", True),
            ("sleeves", True),
            ("material", False),
        ],
        "good_events": [
            "it kept me dry in a proper downpour",
            "it still looks new after a year",
            "the size guide was spot on",
            "it survived a week of hiking",
            "it washes really well",
        ],
        "bad_events": [
            "the strap snapped on day three",
            "the seams split the first time I wore it",
            "the colour ran in the first wash",
            "the zip broke within a week",
            "it shrank two sizes after one wash",
        ],
    },
}

# Adjectives that take an intensifier ("really good") and phrases that do not ("a letdown").
POSITIVE_ADJ = [
    "great",
    "good",
    "impressive",
    "solid",
    "lovely",
    "comfortable",
    "reliable",
    "quick",
    "pleasant",
    "well made",
]
POSITIVE_PHRASES = [
    "excellent",
    "fantastic",
    "superb",
    "outstanding",
    "wonderful",
    "top notch",
    "first rate",
    "brilliant",
    "perfect",
    "better than expected",
    "spot on",
    "a real highlight",
    "faultless",
    "a pleasant surprise",
]
NEGATIVE_ADJ = [
    "poor",
    "disappointing",
    "bad",
    "frustrating",
    "flimsy",
    "slow",
    "unreliable",
    "cheap",
    "uncomfortable",
    "badly made",
]
NEGATIVE_PHRASES = [
    "terrible",
    "awful",
    "dreadful",
    "subpar",
    "useless",
    "a letdown",
    "shoddy",
    "horrible",
    "worse than expected",
    "abysmal",
    "a joke",
    "a mess",
    "unacceptable",
    "a disaster",
]
MILD_ADJ = [
    "fine",
    "okay",
    "decent",
    "acceptable",
    "average",
    "alright",
    "passable",
    "nothing special",
    "so-so",
    "fair enough",
    "middle of the road",
]
INTENSIFIERS = ["really ", "very ", "pretty ", "quite ", "genuinely ", "incredibly "]

POSITIVE_VERDICTS = [
    "I would definitely buy it again",
    "highly recommend",
    "worth every penny",
    "it exceeded my expectations",
    "we will be back",
    "it does exactly what it says",
    "five stars from me",
    "no regrets at all",
    "I have already recommended it to friends",
    "money well spent",
    "I'm very happy with it",
    "couldn't be happier",
    "a great find",
    "I'd give it ten out of ten",
]
NEGATIVE_VERDICTS = [
    "I returned it after a week",
    "save your money",
    "never again",
    "a complete waste of money",
    "I want a refund",
    "I regret buying it",
    "avoid",
    "I would not recommend it",
    "one star",
    "I'm not going back",
    "I wouldn't wish it on anyone",
    "very disappointed overall",
    "stay away",
    "not worth the hassle",
]
FILLERS = [
    "I bought this last month.",
    "We stayed for three nights.",
    "Ordered it on a Monday.",
    "This was a gift for my dad.",
    "I have used it every day since March.",
    "We came here for a birthday dinner.",
    "My partner picked this one.",
    "Bought it on sale.",
    "Second time ordering from them.",
    "We were a group of six.",
    "I use it mostly for work.",
    "Writing this a few weeks in.",
    "It came in a blue box.",
    "I found it through a friend.",
    "We went on a Tuesday evening.",
    "I read a lot of reviews before choosing.",
    "Long review, sorry.",
    "Update after two weeks:",
    "For context, I travel a lot.",
    "I'm not usually one to write reviews.",
]
# Lukewarm endings that lean one way (label follows the lean) ...
LEAN_POSITIVE = [
    "fine for the price",
    "good enough for what I need",
    "does the job",
    "I'd probably buy it again",
    "better than nothing",
    "I can live with that",
]
LEAN_NEGATIVE = [
    "I expected more",
    "not sure it was worth it",
    "I probably won't buy it again",
    "it could have been better",
    "a bit of a shame",
    "I'm on the fence about keeping it",
]
# ... and endings with no lean at all (label is a coin flip: real reviewers disagree on these).
NO_LEAN = [
    "it is what it is",
    "make of that what you will",
    "hard to say",
    "nothing more to add",
    "take it or leave it",
    "your mileage may vary",
]


def _cap(s: str) -> str:
    """Capitalise the first character only (keeps 'I' and proper casing elsewhere)."""
    return s[:1].upper() + s[1:]


class ReviewWriter:
    """Writes one labelled review at a time from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # --- small pieces -----------------------------------------------------------------------------
    def _domain(self) -> dict[str, list]:
        return DOMAINS[self.rng.choice(sorted(DOMAINS))]

    def _aspect(self, dom: dict[str, list], avoid: str = "") -> tuple[str, str]:
        """An aspect of the domain other than ``avoid``, with its verb ('was' or 'were')."""
        text, plural = self.rng.choice([a for a in dom["aspects"] if a[0] != avoid])
        return text, ("were" if plural else "was")

    def _adj(self, polarity: int) -> str:
        """A polar adjective, with an intensifier a third of the time when it takes one."""
        if self.rng.random() < 0.5:
            return self.rng.choice(POSITIVE_PHRASES if polarity > 0 else NEGATIVE_PHRASES)
        word = self.rng.choice(POSITIVE_ADJ if polarity > 0 else NEGATIVE_ADJ)
        return (self.rng.choice(INTENSIFIERS) if self.rng.random() < 0.6 else "") + word

    def _aspect_clause(self, dom: dict[str, list], polarity: int) -> str:
        aspect, be = self._aspect(dom)
        return f"the {aspect} {be} {self._adj(polarity)}"

    def _negated_clause(self, dom: dict[str, list], polarity: int) -> str:
        """A clause whose polarity comes from negating the opposite word ('not bad' is positive)."""
        aspect, be = self._aspect(dom)
        r = self.rng.random()
        if r < 0.55:
            neg_be = {"was": "wasn't", "were": "weren't"}[be] if self.rng.random() < 0.5 else f"{be} not"
            word = self.rng.choice(NEGATIVE_ADJ + NEGATIVE_PHRASES if polarity > 0 else POSITIVE_ADJ + POSITIVE_PHRASES)
            tail = self.rng.choice(["", "", " at all"]) if polarity > 0 else ""
            return f"the {aspect} {neg_be} {word}{tail}"
        if polarity > 0:
            return self.rng.choice(
                [
                    f"I can't complain about the {aspect}",
                    f"there was nothing wrong with the {aspect}",
                    f"I never had a single problem with the {aspect}",
                    f"no issues with the {aspect} whatsoever",
                    f"I couldn't find fault with the {aspect}",
                ]
            )
        return self.rng.choice(
            [
                f"I can't say the {aspect} impressed me",
                f"the {aspect} never worked properly",
                f"nobody could call the {aspect} good",
                f"I wouldn't describe the {aspect} as acceptable",
                f"there was nothing good about the {aspect}",
            ]
        )

    def _event(self, dom: dict[str, list], polarity: int) -> str:
        return self.rng.choice(dom["good_events"] if polarity > 0 else dom["bad_events"])

    def _product(self, dom: dict[str, list]) -> str:
        return self.rng.choice(dom["products"])

    def _end(self, polarity: int) -> str:
        endings = [".", ".", ".", "!", "!!", ""] if polarity > 0 else [".", ".", ".", "!", "...", ""]
        return self.rng.choice(endings)

    def _wrap(self, body: str, polarity: int) -> str:
        """Add optional neutral filler before or after, and a random final punctuation."""
        text = _cap(body) + self._end(polarity)
        r = self.rng.random()
        if r < 0.30:
            text = f"{self.rng.choice(FILLERS)} {text}"
        elif r < 0.40:
            if text[-1] not in ".!":
                text += "."
            text = f"{text} {self.rng.choice([f for f in FILLERS if not f.endswith(':')])}"
        if self.rng.random() < 0.04:
            text = text.lower()
        return text

    # --- review kinds -----------------------------------------------------------------------------
    def simple(self, p: int) -> str:
        dom = self._domain()
        body = self._aspect_clause(dom, p)
        if self.rng.random() < 0.4:
            verdict = self.rng.choice(POSITIVE_VERDICTS if p > 0 else NEGATIVE_VERDICTS)
            body = f"{body}. {_cap(verdict)}"
        return self._wrap(body, p)

    def two_aspects(self, p: int) -> str:
        dom = self._domain()
        first, be1 = self._aspect(dom)
        second, be2 = self._aspect(dom, avoid=first)
        return self._wrap(f"the {first} {be1} {self._adj(p)} and the {second} {be2} {self._adj(p)}", p)

    def event(self, p: int) -> str:
        dom = self._domain()
        ev = self._event(dom, p)
        body = self.rng.choice([ev, f"honestly, {ev}", f"to sum up, {ev}", f"first thing to say: {ev}"])
        if self.rng.random() < 0.5:
            body += ". " + _cap(self.rng.choice(POSITIVE_VERDICTS if p > 0 else NEGATIVE_VERDICTS))
        return self._wrap(body, p)

    def negation(self, p: int) -> str:
        dom = self._domain()
        body = self._negated_clause(dom, p)
        if self.rng.random() < 0.3:
            body = f"{body}, {self._negated_clause(dom, p)}"
        return self._wrap(body, p)

    def contrast(self, p: int) -> str:
        """The final (or main) clause decides the label; the other clause points the other way."""
        dom = self._domain()
        main = self._aspect_clause(dom, p) if self.rng.random() < 0.7 else self._negated_clause(dom, p)
        other = self._aspect_clause(dom, -p)
        if self.rng.random() < 0.3:
            other = self._event(dom, -p)
        product = self._product(dom)
        body = self.rng.choice(
            [
                f"{other}, but {main}",
                f"although {other}, {main}",
                f"{other}. However, {main}",
                f"{other}, yet overall {main}",
                f"{main}, even though {other}",
                f"sure, {other}. Still, {main}",
            ]
        )
        if p < 0 and self.rng.random() < 0.25:
            body = f"I wanted to love this {product}, but {main}"
        if p > 0 and self.rng.random() < 0.25:
            body = f"I was ready to hate this {product}, but {main}"
        return self._wrap(body, p)

    def sarcasm(self, p: int) -> str:
        """Positive words, negative meaning (mostly); a few 'grudging praise' positives."""
        dom = self._domain()
        product = self._product(dom)
        if p < 0:
            ev = self._event(dom, -1)
            aspect, _ = self._aspect(dom)
            body = self.rng.choice(
                [
                    f"oh great, {ev}. Just what I wanted",
                    f"absolutely brilliant, {ev}",
                    f"five stars for teaching me patience: {ev}",
                    f"love how {ev}. Fantastic work",
                    f"wonderful {aspect}, if you enjoy disappointment",
                    f"what a treat, {ev}",
                    f"best {product} ever, said nobody after {ev}",
                    f"thanks a lot, {ev}. Really impressive",
                ]
            )
        else:
            aspect, _ = self._aspect(dom)
            body = self.rng.choice(
                [
                    f"I hate how much I love this {product}",
                    f"annoyingly, the {aspect} is perfect and I have nothing to complain about",
                    f"my wallet is crying but this {product} was worth it",
                    f"dangerously good {aspect}, I keep coming back",
                    f"I expected the worst and was completely wrong about this {product}",
                    f"ridiculously good {product}, it's almost unfair",
                ]
            )
        return self._wrap(body, p)

    def lukewarm(self, p: int) -> tuple[str, int]:
        """Mild words; the label follows a faint lean or, for a third of them, is a coin flip."""
        dom = self._domain()
        aspect, be = self._aspect(dom)
        head = f"the {aspect} {be} {self.rng.choice(MILD_ADJ)}"
        if self.rng.random() < 1 / 3:
            tail = self.rng.choice(NO_LEAN)
            p = self.rng.choice([1, -1])
        else:
            tail = self.rng.choice(LEAN_POSITIVE if p > 0 else LEAN_NEGATIVE)
        if self.rng.random() < 0.4:
            other, be2 = self._aspect(dom, avoid=aspect)
            head = f"{head} and the {other} {be2} {self.rng.choice(MILD_ADJ)}"
        return self._wrap(f"{head}, {tail}", p), p

    def comparative(self, p: int) -> str:
        dom = self._domain()
        product = self._product(dom)
        if p > 0:
            body = self.rng.choice(
                [
                    f"much better than the last {product} I had",
                    f"a big step up from my old {product}",
                    f"nothing else I've tried comes close to this {product}",
                    f"way ahead of the cheaper {product} I had before",
                ]
            )
        else:
            body = self.rng.choice(
                [
                    f"not as good as the previous {product}",
                    f"a step down from my old {product}",
                    f"my old {product} was better in every way",
                    f"the cheaper {product} I had before did a better job",
                ]
            )
        return self._wrap(body, p)

    def rating(self, p: int) -> str:
        if p > 0:
            body = self.rng.choice(
                [
                    "five stars",
                    "ten out of ten",
                    "would buy again",
                    "exactly as described",
                    "does what it says on the tin",
                    "no complaints",
                    "full marks",
                ]
            )
        else:
            body = self.rng.choice(
                [
                    "two stars, and that's generous",
                    "one star. Zero if I could",
                    "would not buy again",
                    "not as described",
                    "do not bother",
                    "complete rubbish",
                    "want my money back",
                ]
            )
        return self._wrap(body, p)

    # --- one review ------------------------------------------------------------------------------
    KINDS: tuple[tuple[str, float], ...] = (
        ("simple", 0.24),
        ("two_aspects", 0.08),
        ("event", 0.10),
        ("negation", 0.13),
        ("contrast", 0.18),
        ("sarcasm", 0.08),
        ("lukewarm", 0.11),
        ("comparative", 0.05),
        ("rating", 0.03),
    )

    def review(self) -> tuple[str, int, str]:
        """Return ``(text, clean_label, kind)`` with the label in {0, 1}."""
        p = self.rng.choice([1, -1])
        kind = self.rng.choices([k for k, _ in self.KINDS], weights=[w for _, w in self.KINDS])[0]
        if kind == "lukewarm":
            text, p = self.lukewarm(p)
        else:
            text = getattr(self, kind)(p)
        # Occasionally a review gets a second, same-polarity sentence: more length variety.
        if kind in ("simple", "event", "negation") and self.rng.random() < 0.2:
            verdict = _cap(self.rng.choice(POSITIVE_VERDICTS if p > 0 else NEGATIVE_VERDICTS))
            if verdict not in text:
                text = f"{text.rstrip('.!')}. {verdict}."
        return text, int(p > 0), kind


def make_splits(seed: int = SEED, noise_rate: float = NOISE_RATE) -> dict[str, list[tuple[str, int]]]:
    """Build all splits: unique texts (no text in two splits), then flip ``noise_rate`` of each split."""
    rng = random.Random(seed)
    writer = ReviewWriter(rng)
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, int]]] = {}
    for name, size in SPLIT_SIZES.items():
        rows: list[tuple[str, int]] = []
        while len(rows) < size:
            text, label, _ = writer.review()
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            rows.append((text, label))
        flip = set(rng.sample(range(size), round(noise_rate * size)))
        splits[name] = [(t, 1 - y if i in flip else y) for i, (t, y) in enumerate(rows)]
    return splits


def main() -> None:
    """Write one CSV per split with columns ``text,label``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in make_splits(args.seed).items():
        path = args.out / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        positives = sum(y for _, y in rows)
        print(f"wrote {path} ({len(rows)} rows, {positives} positive, {path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
