import pytest

from mtlheads.data import numeric

PASSAGE = ("In 1973 the garrison had 1,200 soldiers and 300 horses. By 1979 it held 150 men and 40 women; "
           "later nine hundred soldiers served there. One of them left in May 1980.")


@pytest.mark.parametrize("text, value", [("1,200", 1200), ("1200", 1200), ("twelve hundred", 1200),
                                         ("forty-five", 45), ("5 million", 5_000_000), ("3.5", 3.5),
                                         ("two thousand and five", 2005), ("a lot", None), ("12 13", None)])
def test_numbers_parse_from_digits_words_and_scales(text, value):
    assert numeric.parse_number(text) == value


def test_mentions_know_years_from_counts_and_name_what_is_counted():
    found = numeric.mentions(PASSAGE)
    assert [(m.text, m.kind, m.unit) for m in found] == [
        ("1973", "year", None), ("1,200", "count", "soldiers"), ("300", "count", "horses"), ("1979", "year", None),
        ("150", "count", "men"), ("40", "count", "women"), ("nine hundred", "count", "soldiers"),
        ("1980", "year", None)]  # "One of them" is a pronoun, not a count
    assert all(PASSAGE[m.start:m.end] == m.text for m in found)
    assert numeric.mentions("It cost 2005 dollars.")[0].kind == "count"


# The passage's own questions (as SQuAD's), with their answers: the events the years date.
ASKED = (("When was the garrison founded?", "1973"), ("When did it hold 150 men?", "1979"),
         ("When did one of them leave?", "May 1980"), ("In what year did a soldier leave?", "1980"),
         ("Who served there?", "soldiers"))


def test_questions_compute_their_answers_from_their_arguments():
    made = {q.question: q for q in numeric.questions(PASSAGE, ASKED)}
    years = made['How many years passed between the answers to "When was the garrison founded?" and '
                 '"In what year did a soldier leave?"?']
    assert years.answer == 7 and years.operation == "difference"
    assert [a.text for a in years.arguments] == ["1980", "1973"]
    assert [(q, m.text) for q, m in years.events] == [("When was the garrison founded?", "1973"),
                                                       ("In what year did a soldier leave?", "1980")]
    total = made["How many soldiers does the passage mention in total?"]
    assert total.answer == 2100 and [a.text for a in total.arguments] == ["1,200", "nine hundred"]
    assert made["What is the difference between the two numbers of soldiers mentioned?"].answer == 300
    assert made["How many more men than women were there?"].answer_text == "110"
    assert made["How many more soldiers than horses were there?"].answer == 900
    assert made["How many men and women were there in total?"].answer == 190
    for q in made.values():
        values = [a.value for a in q.arguments]
        assert q.answer == (values[0] - values[1] if q.operation == "difference" else sum(values))


def test_no_question_names_a_number_it_uses_and_every_one_leaves_a_distractor():
    from mtlheads.data import squad

    by_context = {}
    for q in squad.load()[:1500]:
        by_context.setdefault(q["context"], []).append((q["question"], q["answers"][0]))
    made = [(context, q) for context, asked in [(PASSAGE, ASKED), *by_context.items()]
            for q in numeric.questions(context, tuple(asked))]
    assert len({q.template for _, q in made}) == 5  # every template occurs on real passages
    for context, q in made:
        named = {m.value for m in numeric.mentions(q.question)}  # ("the two numbers of soldiers": 2)
        assert not named & {m.value for m in q.arguments}, q.question
        assert all(context[m.start:m.end] == m.text for m in q.arguments)
        others = {m.value for m in numeric.mentions(context)} - {m.value for m in q.arguments}
        assert others, q.question  # a number of the passage the question does not use


def test_no_question_where_none_fits():
    assert numeric.questions("The river is long and the city is old.") == []
    assert numeric.questions("It was built in 1850.", (("When was it built?", "1850"),)) == []  # one year
    assert numeric.questions("The tower is 300 feet and 120 metres tall.") == []  # measures, not things
    same = numeric.questions("There were three cats, and later three cats again.")
    assert not [q for q in same if q.operation == "sum"]  # the same figure twice is one group
    # Two years, but no asked question dates them as an event, or only one that names a number.
    two = "It was built in 1850 and rebuilt in 1901 by 40 men."
    assert numeric.questions(two) == []
    assert numeric.questions(two, (("When was it built?", "1850"), ("When did 40 men rebuild it?", "1901"))) == []
    dated = numeric.questions(two, (("When was it built?", "1850"), ("When was it rebuilt?", "1901")))
    assert [q.answer for q in dated] == [51]
    # Every number an argument: no distractor, so no question.
    assert numeric.questions("There were 150 men and 40 women.") == []
    assert [q.template for q in numeric.questions("There were 150 men and 40 women in 1901.")] == [
        "more than", "listed total"]


def test_gsm8k_arguments_are_the_annotated_operands_found_in_the_question():
    question = "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes with four."
    found = numeric.gold_arguments(question, ["16-3-4", "9*2"])
    assert [(m.text, m.value) for m in found] == [("16", 16), ("three", 3), ("four", 4)]
    problems = numeric.gsm8k("test")
    assert len(problems) == 1319 and problems[0]["answer"] == 18
    assert sum(bool(p["arguments"]) for p in problems) > 0.9 * len(problems)
    with pytest.raises(ValueError, match="'dev'.*train, test"):
        numeric.gsm8k("dev")


def test_counterfactuals_keep_or_change_the_answer_as_their_kind_says():
    asked = (("When was the garrison founded?", "1973"), ("When did the garrison have horses?", "1979"),
             ("When did the last one leave?", "1980"))
    made = {}
    for q in numeric.questions(PASSAGE, asked):
        made.setdefault(q.template, q)
    years = made["years between"]  # the first pair: 1973 and 1979
    assert years.answer == 6
    edits = dict(numeric.counterfactuals(years, PASSAGE, asked))
    assert edits["order swapped"].question == ('How many years passed between the answers to "When did the garrison '
                                               'have horses?" and "When was the garrison founded?"?')
    assert edits["order swapped"].answer == 6 and edits["order swapped"].arguments == years.arguments
    another = edits["another year"]  # the earlier event kept, the later one replaced by 1980's
    assert another.question == ('How many years passed between the answers to "When was the garrison founded?" and '
                                '"When did the last one leave?"?')
    assert another.answer == 7 and {a.text for a in another.arguments} == {"1973", "1980"}
    assert numeric.mentions(another.question) == []
    fewer = dict(numeric.counterfactuals(made["more than"], PASSAGE))["more -> fewer, roles swapped"]
    assert fewer.question == "How many fewer horses than soldiers were there?"
    assert fewer.answer == made["more than"].answer
    assert numeric.counterfactuals(made["total of a unit"], PASSAGE) == []
    assert set(edits) | {"more -> fewer, roles swapped"} == set(numeric.COUNTERFACTUALS)
