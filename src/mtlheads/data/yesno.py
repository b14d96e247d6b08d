"""Yes/no verification questions over SQuAD passages (chapter 8, READER).

A SQuAD question becomes "is it this candidate?": once with its gold answer (the answer is yes)
and once with a distractor of the same type from the same passage (no), both over the same
passage window. Each pair keeps the gold evidence: the sentence that holds the answer, and the
answer's span. Three templates, each kept only where it reads naturally:

- ``who did``: "Who founded the company?" -> "Was it Ted Heath who founded the company?" (the
  verb a past-tense form; the answer and the distractor names);
- ``who was``: "Who was the founder of CBS?" -> "Was William S. Paley the founder of CBS?";
- ``when``: "When was the university founded?" / "In what year was ...?" -> "Was the university
  founded in 1850?"; "When did the Normans conquer England?" -> "Did the Normans conquer England
  in 1066?" (the answer and the distractor years).

Questions the templates cannot phrase (another question word, "and", a passive "by" clause), and
those whose passage offers no distractor of the answer's type, are dropped.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

YES, NO = "yes", "no"
LABELS = (NO, YES)
TEMPLATES = ("who did", "who was", "when")

_WHO_DID = re.compile(r"^Who ([a-z]+) (.+)\?$")
_WHO_WAS = re.compile(r"^Who (is|was|were|are) (the .+)\?$")
_WHEN = re.compile(r"^(?:When|In what year|In which year|What year) (was|were|did) (.+)\?$")
_YEAR = re.compile(r"(?<![\d,.])(1[0-9]{3}|20[0-9]{2})(?![\d,])")
# a name: capitalised words (an initial "F." or "Jr." too), joined by de/van/von/la/del; no possessive
_WORD = r"(?:[A-Z][a-z][a-zA-Z-]*|[A-Z]\.|Jr\.|Sr\.|Dr\.|St\.)(?![\w'’])"
_NAME = re.compile(rf"\b{_WORD}(?:\s+(?:(?:de|van|von|la|del)\s+)?{_WORD})*")
_OTHER_WH = re.compile(r"\b(what|which|when|where|why|how|whom|whose|who)\b|\band\b|\bby\b|,", re.I)
IRREGULAR_PAST = frozenset(
    "wrote won built led made gave took became began sang found fought held kept left lost met paid said sold sent "
    "set shot spent stood taught told thought brought bought caught chose drew drove fell flew grew knew ran rode "
    "rose saw shook spoke stole threw wore beat broke came went got heard hit hurt let put read sat struck "
    "swore tore understood overthrew overcame undertook withdrew forbade foresaw rebuilt upheld oversaw".split())
# capitalised words that start sentences or name no one: never a "who" candidate on their own
NOT_NAMES = frozenset(
    "The A An In On At He She It They We I You This That These Those His Her Its Their Our After Before During "
    "However Although When While As By For From With Since Following Despite Many Some Most Other Also But And Or "
    "If Because Both Each Such One Two Three Four Five First Second Third There Then Today According Under Between "
    "Among Another Several Later Early Until Through Over Within Without Upon Into Of To Since Only Even Not No "
    "Most Much More Yet Thus Still Further Although What Which Who Where Why How Jr Sr Dr St Mr Mrs Ms".split())


@dataclass(frozen=True)
class Candidate:
    text: str
    start: int  # character offset in the passage

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text``'s sentences, split after each ., ! or ? that ends a word before
    white space (``nontarget.sentences``' rule)."""
    spans, start = [], 0
    for m in re.finditer(r"(?<=[.!?])\s+", text):
        if text[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def sentence_of(text: str, offset: int) -> tuple[int, int]:
    """The span of the sentence of ``text`` that holds character ``offset``."""
    for start, end in sentence_spans(text):
        if start <= offset < end:
            return start, end
    raise ValueError(f"offset {offset} lies in no sentence of a {len(text)}-character text")


def is_past_verb(word: str) -> bool:
    return word in IRREGULAR_PAST or (len(word) > 4 and word.endswith("ed"))


def template_of(question: str) -> str | None:
    """Which template can phrase ``question`` (None: none). A ``when`` question that names a year
    already ("... prior to 2000 in 1946?") is dropped, and so is a "did" one with a past form after
    "did" ("When did the museum started ...?": SQuAD's own slip, which the template would keep)."""
    if m := _WHEN.match(question):
        verb, rest = m.groups()
        past_after_did = verb == "did" and any(is_past_verb(w) for w in re.findall(r"[a-z]+", rest))
        return None if _OTHER_WH.search(rest) or _YEAR.search(rest) or past_after_did else "when"
    if (m := _WHO_WAS.match(question)) and not _OTHER_WH.search(m.group(2)):
        return "who was"
    if (m := _WHO_DID.match(question)) and is_past_verb(m.group(1)) and not _OTHER_WH.search(m.group(2)):
        return "who did"
    return None


def phrase(question: str, candidate: str) -> str:
    """``question`` as "is it ``candidate``?" by its template."""
    template = template_of(question)
    if template == "when":
        verb, rest = _WHEN.match(question).groups()
        return f"{verb.capitalize()} {rest} in {candidate}?"
    if template == "who was":
        verb, rest = _WHO_WAS.match(question).groups()
        return f"{verb.capitalize()} {candidate} {rest}?"
    if template == "who did":
        verb, rest = _WHO_DID.match(question).groups()
        return f"Was it {candidate} who {verb} {rest}?"
    raise ValueError(f"no template phrases {question!r}; templates: {TEMPLATES}")


def is_name(text: str) -> bool:
    """A name-like answer: one to five words, each capitalised (or a joining de/van/of ...)."""
    words = text.split()
    return 1 <= len(words) <= 5 and bool(_NAME.fullmatch(text)) and text not in NOT_NAMES


def candidates(context: str, template: str) -> list[Candidate]:
    """Same-type candidates in ``context``: years for ``when``, names for the ``who`` templates."""
    if template == "when":
        return [Candidate(m.group(1), m.start(1)) for m in _YEAR.finditer(context)]
    out = []
    for m in _NAME.finditer(context):
        words = m.group(0).split()
        while words and words[0] in NOT_NAMES:  # "The Beatles" keeps "Beatles"; "In Paris" keeps "Paris"
            words = words[1:]
        if words:
            text = " ".join(words)
            out.append(Candidate(text, m.start() + m.group(0).index(words[0])))
    return [c for c in out if is_name(c.text)]


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two character spans share a character."""
    return a[0] < b[1] and b[0] < a[1]


# words that mark a capitalised phrase as no one's name (an institution, an event, a work ...)
NOT_PERSONAL = frozenset(
    "House University College School Party Company Corporation Department Ministry Office Council Committee Court "
    "War Battle Theory Law Laws Act Treaty Bowl Show Series Award Awards Prize Church Museum Library Center Centre "
    "Street Road River Lake Mountain Island Islands Park Hall Station Airport Bridge Empire Kingdom Republic States "
    "Union Army Navy Force Forces Club League Association Society Institute Foundation Bank Project Program "
    "Programme Test Draft Day Age Revolution Movement Network Channel Records Times Post News Group Station".split())


def _same_kind(candidate: Candidate, gold: str, template: str) -> bool:
    """For a name: no word of an institution or event, and as many words as the answer, give or take one."""
    if template == "when":
        return True
    words = candidate.text.split()
    return not NOT_PERSONAL & set(words) and abs(len(words) - len(gold.split())) <= 1


def distractor(question: dict, template: str, rng: random.Random, others: list[dict] = ()) -> Candidate | None:
    """A candidate of the answer's type from the question's passage that is not its answer, not
    inside the answer's span and not named in the question. First choice: the answer of another
    question of the passage that a template of the same kind (``who`` or ``when``) asks (``others``);
    else a candidate of the passage of the answer's form (``_same_kind``); drawn at random. None
    where there is none."""
    gold = question["answers"][0].strip()
    gold_span = (question["answer_start"], question["answer_start"] + len(question["answers"][0]))
    asked = question["question"].lower()
    answers = {a.strip().lower() for a in question["answers"]}

    def fits(c: Candidate) -> bool:
        text = c.text.lower()
        return (text not in answers and not overlaps((c.start, c.end), gold_span) and text not in asked
                and gold.lower() not in text and text not in gold.lower())

    kind = template.split()[0]
    answered = [Candidate(o["answers"][0].strip(), o["answer_start"] + o["answers"][0].index(o["answers"][0].strip()))
                for o in others if o["context"] == question["context"] and (usable(o) or "").split(" ")[0] == kind]
    pool = sorted({c for c in answered if fits(c)}, key=lambda c: (c.start, c.text))
    if not pool:
        pool = [c for c in candidates(question["context"], template) if fits(c) and _same_kind(c, gold, template)]
    return rng.choice(pool) if pool else None


def usable(question: dict) -> str | None:
    """The template of a SQuAD question whose answer fits it (a year for ``when``, a name for the
    ``who`` templates), else None."""
    template = template_of(question["question"])
    answer = question["answers"][0].strip()
    if template == "when":
        return template if re.fullmatch(r"1[0-9]{3}|20[0-9]{2}", answer) else None
    if template is not None and is_name(answer):
        return template
    return None


def pairs(questions: list[dict], seed: int = 0) -> list[dict]:
    """A yes/no pair for each SQuAD question a template phrases and its passage offers a
    distractor: ``yes`` (the question with its answer) and ``no`` (with the distractor), the
    ``template``, the ``answer`` and ``distractor`` (with ``distractor_source``: another question's
    answer, or a name or year of the passage) with their character spans, the ``evidence``
    sentence's span (the one holding the answer), and the SQuAD fields (``context`` ...)."""
    rng = random.Random(seed)
    by_context: dict[str, list[dict]] = {}
    for q in questions:
        by_context.setdefault(q["context"], []).append(q)
    out = []
    for q in questions:
        template = usable(q)
        if template is None:
            continue
        other = distractor(q, template, rng, by_context[q["context"]])
        if other is None:
            continue
        answer = q["answers"][0].strip()
        start = q["answer_start"] + q["answers"][0].index(answer)
        out.append({**q, "template": template, YES: phrase(q["question"], answer), NO: phrase(q["question"], other.text),
                    "answer": answer, "answer_span": (start, start + len(answer)),
                    "distractor": other.text, "distractor_span": (other.start, other.end),
                    "distractor_source": "another question's answer" if any(
                        o["answers"][0].strip() == other.text for o in by_context[q["context"]]) else "the passage",
                    "evidence": sentence_of(q["context"], start)})
    return out
