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


def test_questions_compute_their_answers_from_their_arguments():
    made = {q.question: q for q in numeric.questions(PASSAGE)}
    years = made["How many years passed between 1973 and 1979?"]
    assert years.answer == 6 and years.operation == "difference"
    assert [a.text for a in years.arguments] == ["1979", "1973"]
    total = made["How many soldiers does the passage mention in total?"]
    assert total.answer == 2100 and [a.text for a in total.arguments] == ["1,200", "nine hundred"]
    assert made["What is the difference between the two numbers of soldiers mentioned?"].answer == 300
    assert made["How many more men than women were there?"].answer_text == "110"
    assert made["How many more soldiers than horses were there?"].answer == 900
    for q in made.values():
        values = [a.value for a in q.arguments]
        assert q.answer == (values[0] - values[1] if q.operation == "difference" else sum(values))


def test_no_question_where_no_template_fits():
    assert numeric.questions("The river is long and the city is old.") == []
    assert numeric.questions("It was built in 1850.") == []  # one year: nothing to subtract
    assert numeric.questions("The tower is 300 feet and 120 metres tall.") == []  # measures, not things
    same = numeric.questions("There were three cats, and later three cats again.")
    assert not [q for q in same if q.operation == "sum"]  # the same figure twice is one group


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
    made = {q.template: q for q in numeric.questions(PASSAGE)}
    edits = dict(numeric.counterfactuals(made["years between"], PASSAGE))
    assert edits["order swapped"].question == "How many years passed between 1979 and 1973?"
    assert edits["order swapped"].answer == 6 and edits["order swapped"].arguments == made["years between"].arguments
    another = edits["another year"]  # 1980, the passage's first year not yet asked about, replaces 1979
    assert another.question == "How many years passed between 1973 and 1980?" and another.answer == 7
    assert {a.text for a in another.arguments} == {"1973", "1980"}
    fewer = dict(numeric.counterfactuals(made["more than"], PASSAGE))["more -> fewer, roles swapped"]
    assert fewer.question == "How many fewer women than men were there?"
    assert fewer.answer == made["more than"].answer
    assert numeric.counterfactuals(made["total of a unit"], PASSAGE) == []
    assert set(edits) | {"more -> fewer, roles swapped"} == set(numeric.COUNTERFACTUALS)
