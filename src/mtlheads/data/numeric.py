"""Numbers in text, DROP-style arithmetic questions over SQuAD passages, and GSM8K arguments.

``mentions`` finds the numbers of a text with their character offsets and values: digits
("1200", "1,200", "3.5"), digits with a scale ("5 million"), number words ("twelve",
"forty-five", "twelve hundred") and years. A count's ``unit`` is the noun right after it
("1,200 soldiers"), the word the questions use to name it.

``questions`` writes templated arithmetic questions over a passage, each with its answer, its
operation and its gold arguments (the mentions used). No question names a number it uses: it
names what the numbers count ("How many soldiers ... in total?") or the events the years date
(two of the passage's own questions answered by years). A template is used only where the
passage gives what it needs, and a question only where the passage also has a number it does
not use, so a passage with no suitable numbers gets no question.

``gsm8k`` reads GSM8K problems; a problem's gold arguments are the operands of its calculator
annotations ``<<a op b = c>>`` that occur in the question text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from mtlheads.data import sources
from mtlheads.metrics import STOPWORDS

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(_UNITS) | set(_TENS) | set(_SCALES)
_DIGITS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_TOKEN = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\S")
_MONTHS = set("january february march april may june july august september october november december".split())
_YEAR_CUES = {"in", "since", "by", "until", "till", "from", "to", "of", "between", "and", "after", "before", "during",
              "early", "late", "mid", "around", "circa", "c", "year", "the"} | _MONTHS
# Plural nouns a question can count ("how many more men than women"); other units must end in -s.
_IRREGULAR_PLURALS = {"people", "men", "women", "children", "cattle", "police", "staff", "feet", "teeth", "mice"}
_NOT_COUNTED = {"years", "percent", "times", "days", "months", "weeks", "hours", "minutes", "seconds", "decades",
                "centuries", "points", "degrees", "was", "is", "has", "its", "this", "his", "as", "us", "thus",
                "less", "across", "towards", "plus"}
# Units of measure: a count of them is a measurement, and "how many more miles than pounds" is no question.
_MEASURES = set("""kilometres kilometers miles metres meters feet inches yards acres hectares pounds tons tonnes
kilograms grams litres liters gallons dollars cents euros milliseconds nanoseconds kilobytes megabytes bytes bits
volts watts kilowatts megawatts calories""".split())


def parse_number(text: str) -> float | None:
    """The value of a number written in digits, words or both ("1,200", "twelve hundred",
    "forty-five", "5 million"); None if ``text`` is not a number."""
    words = [w for w in re.split(r"[\s-]+", text.strip().lower().replace(",", "")) if w and w != "and"]
    if not words:
        return None
    total, current = 0.0, 0.0
    for w in words:
        if re.fullmatch(r"\d+(?:\.\d+)?", w):
            if current:
                return None  # two numbers in a row
            current = float(w)
        elif w in _UNITS or w in _TENS:
            current += _UNITS.get(w, _TENS.get(w))
        elif w == "hundred":
            current = (current or 1) * 100
        elif w in _SCALES:
            total, current = total + (current or 1) * _SCALES[w], 0.0
        else:
            return None
    return total + current


@dataclass(frozen=True)
class Mention:
    text: str
    value: float
    start: int  # character offsets in the text: text[start:end] == self.text
    end: int
    kind: str  # "year" or "count"
    unit: str | None = None  # the plural noun a count counts, if any

    @property
    def shown(self) -> str:
        """The value as a question or an answer writes it: no trailing ".0", no thousands commas."""
        return format_number(self.value)


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def mentions(text: str) -> list[Mention]:
    """Every number in ``text``, left to right (see the module doc)."""
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    out, i = [], 0
    while i < len(tokens):
        word, start, end = tokens[i]
        j = i
        if _DIGITS.fullmatch(word):
            j = i + 1
            if j < len(tokens) and tokens[j][0].lower() in ("thousand", "million", "billion"):
                j += 1
        elif word.lower() in _NUMBER_WORDS or (word.lower().split("-")[0] in _TENS and "-" in word):
            j = i + 1
            while j < len(tokens) and (tokens[j][0].lower() in _NUMBER_WORDS or tokens[j][0].lower() == "and"
                                       and j + 1 < len(tokens) and tokens[j + 1][0].lower() in _NUMBER_WORDS):
                j += 1
        if j == i:
            i += 1
            continue
        span = text[start:tokens[j - 1][2]]
        value = parse_number(span)
        if value is None or word.lower() in ("one", "zero") and j == i + 1:  # "one" is mostly a pronoun
            i = j
            continue
        previous = tokens[i - 1][0].lower() if i else ""
        following = tokens[j][0] if j < len(tokens) else ""
        unit = following.lower() if following.isalpha() and following.islower() and _countable(following) else None
        is_year = (re.fullmatch(r"\d{4}", word) is not None and 1000 <= value <= 2100 and j == i + 1
                   and unit is None and (previous in _YEAR_CUES or not following.isalpha()))
        out.append(Mention(span, value, start, tokens[j - 1][2], "year" if is_year else "count",
                           None if is_year else unit))
        i = j
    return out


def _countable(word: str) -> bool:
    w = word.lower()
    return w not in _NOT_COUNTED and w not in STOPWORDS and (w in _IRREGULAR_PLURALS or (len(w) > 3 and w.endswith("s") and not
                                                                   w.endswith("ss")))


# Questions -------------------------------------------------------------------------------------

OPERATIONS = ("difference", "sum")


@dataclass(frozen=True)
class Question:
    question: str
    answer: float
    operation: str  # one of OPERATIONS
    arguments: tuple[Mention, ...]  # in the order the operation uses them
    template: str
    # "years between": the questions naming the two events with the years that date them, as named
    events: tuple[tuple[str, Mention], ...] = ()

    @property
    def answer_text(self) -> str:
        return format_number(self.answer)


def questions(passage: str, asked: tuple[tuple[str, str], ...] = ()) -> list[Question]:
    """The arithmetic questions the templates can phrase over ``passage``, none naming a number of
    its arguments: the question names what the numbers count, or the events the years date.

    ``asked`` are the passage's own questions with their answers ((question, answer) pairs, say
    SQuAD's): two of them answered by different years of the passage give "How many years passed
    between the answers to "..." and "..."?". A question is kept only where the passage also
    has a number that is not one of its arguments (a distractor), so that taking every number
    of the passage is not the answer's arguments."""
    found = mentions(passage)
    out = _years_between(found, asked)
    # A bare four-digit count in the years' range ("2005 dollars", "the 2005 series") is more
    # likely a year than a count: no question uses it.
    counts = [m for m in found if m.kind == "count" and m.unit and not _year_like(m)]
    by_unit: dict[str, list[Mention]] = {}
    for m in counts:
        by_unit.setdefault(m.unit, []).append(m)
    for unit, group in by_unit.items():
        values = {m.value for m in group}
        if len(group) == 2 and len(values) == 2:
            big, small = sorted(group, key=lambda m: -m.value)
            out.append(Question(f"What is the difference between the two numbers of {unit} mentioned?",
                                big.value - small.value, "difference", (big, small), "difference of a unit"))
        if 2 <= len(group) <= 4 and len(values) == len(group) and unit not in _MEASURES:  # adding heights: no
            out.append(Question(f"How many {unit} does the passage mention in total?", sum(m.value for m in group),
                                "sum", tuple(group), "total of a unit"))
    for a, b in zip(counts, counts[1:]):  # a listed pair of different things: "150 men and 40 women"
        if (a.unit != b.unit and a.value != b.value and not {a.unit, b.unit} & _MEASURES
                and _listed_together(passage, a, b)):
            more, fewer = (a, b) if a.value > b.value else (b, a)
            out.append(Question(f"How many more {more.unit} than {fewer.unit} were there?", more.value - fewer.value,
                                "difference", (more, fewer), "more than"))
            out.append(Question(f"How many {a.unit} and {b.unit} were there in total?", a.value + b.value, "sum",
                                (a, b), "listed total"))
    values = {m.value for m in found}
    return [q for q in out if values - {m.value for m in q.arguments}]


YEARS_BETWEEN = "How many years passed between the answers to \"{}\" and \"{}\"?"
PAIRS_PER_PASSAGE = 3  # "years between" questions from one passage's asked questions, at most


def _years_between(found: list[Mention], asked) -> list[Question]:
    """Questions on the years between two events, each named by an ``asked`` question (``_dated``)."""
    dated = _dated(found, asked)
    return [_years_question(*pair) for pair in list(itertools.combinations(dated.items(), 2))[:PAIRS_PER_PASSAGE]]


def _dated(found: list[Mention], asked) -> dict[str, Mention]:
    """The ``asked`` questions answered by a year of the passage and naming no number, each with
    the first mention of its year (one question per year)."""
    years = {m.value: m for m in reversed([m for m in found if m.kind == "year"])}  # first mention of each year
    dated: dict[str, Mention] = {}
    for question, answer in asked:
        answer = answer.strip()
        value = parse_number(answer) if re.fullmatch(r"\d{4}", answer) else None
        if value in years and years[value] not in dated.values() and not mentions(question):
            dated[" ".join(question.split())] = years[value]
    return dated


def _years_question(first: tuple[str, Mention], second: tuple[str, Mention]) -> Question:
    later, earlier = sorted((first[1], second[1]), key=lambda m: -m.value)
    return Question(YEARS_BETWEEN.format(first[0], second[0]), later.value - earlier.value, "difference",
                    (later, earlier), "years between", (first, second))


def _year_like(m: Mention) -> bool:
    return re.fullmatch(r"\d{4}", m.text) is not None and 1000 <= m.value <= 2100


def _listed_together(text: str, a: Mention, b: Mention) -> bool:
    """``a``'s unit, then at most "and" or a comma, then ``b``: "150 men and 40 women"."""
    between = text[a.end:b.start].split()
    return between[:1] == [a.unit] and " ".join(between[1:]) in ("and", ",", ", and") or \
        between[:1] == [a.unit + ","] and " ".join(between[1:]) in ("", "and")


COUNTERFACTUALS = {"order swapped": "same answer, same arguments",
                   "more -> fewer, roles swapped": "same answer, same arguments",
                   "another year": "new answer, one new argument"}


def counterfactuals(question: Question, passage: str, asked=()) -> list[tuple[str, Question]]:
    """Edits of a generated question (``COUNTERFACTUALS``): the two events named in the other
    order; "more A than B" asked as "fewer B than A"; the later year's event replaced by another
    event of ``asked`` dated by the passage (the first not yet used), which changes the answer and
    one argument."""
    out = []
    if question.template == "years between":
        first, second = question.events
        out.append(("order swapped", _years_question(second, first)))
        later, earlier = question.arguments
        dated = _dated(mentions(passage), asked)
        other = next(((q, m) for q, m in dated.items() if m.value not in (later.value, earlier.value)), None)
        if other is not None:
            kept = next(pair for pair in question.events if pair[1] == earlier)
            out.append(("another year", _years_question(kept, other)))
    elif question.template == "more than":
        more, fewer = question.arguments
        out.append(("more -> fewer, roles swapped",
                    Question(f"How many fewer {fewer.unit} than {more.unit} were there?", question.answer,
                             "difference", question.arguments, question.template)))
    return out


# GSM8K ------------------------------------------------------------------------------------------

_CALCULATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")


def gsm8k(split: str = "test", root=None) -> list[dict]:
    """GSM8K problems: ``question``, ``answer`` (the final number), ``calculations`` (each
    annotation's expression) and ``arguments``: the mentions of the question whose value is an
    operand of some calculation (the gold arguments)."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown GSM8K split {split!r}; valid splits: train, test")
    problems = []
    for record in sources.jsonl_records("grade-school-math", f"grade_school_math/data/{split}.jsonl", root,
                                        keys=("question", "answer")):
        calculations = [m.group(1) for m in _CALCULATION.finditer(record["answer"])]
        problems.append({"question": record["question"],
                         "answer": parse_number(record["answer"].rsplit("####", 1)[1]),
                         "calculations": calculations,
                         "arguments": gold_arguments(record["question"], calculations)})
    return problems


def gold_arguments(question: str, calculations: list[str]) -> list[Mention]:
    """The question's number mentions whose value is an operand of one of ``calculations``."""
    operands = {float(x.replace(",", "")) for c in calculations for x in re.findall(r"\d[\d,]*(?:\.\d+)?", c)}
    return [m for m in mentions(question) if m.value in operands]
