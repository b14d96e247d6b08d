"""The Stem Cell paper's published probe results, for tables that set ours beside them.

He & Choi (2021) give each label's best-head accuracy (BERT-base, OntoNotes 5) for the
pretrained encoder ("static"), STL ("single"), each pairwise MTL model (named by the other task)
and MTL-5 ("joint"; "all" for POS), mean +- standard deviation over their runs, as tables typed
into the plotting scripts of their official repository
(github.com/emorynlp/stem-cell-hypothesis, commit 842c6ac, ``stem_cell_hypothesis/en_bert_base/
head/vis/{pos,ner,dep,con,srl}.py``). Each table lists labels by descending frequency; the ten
most frequent of each are copied here, cell for cell. Their labels are OntoNotes' (PTB tags,
OntoNotes entity types, Stanford dependencies, PTB phrases, PropBank roles): only POS shares its
label set with EWT5, so only POS is compared label by label.
"""

from __future__ import annotations

import pandas as pd

from mtlheads.registry import PRETRAINED
from mtlheads.tasks import TASKS

SOURCE = "emorynlp/stem-cell-hypothesis@842c6ac, stem_cell_hypothesis/en_bert_base/head/vis/"

_TABLES = {
    "pos": """\
label	static	single	ner	dep	con	srl	all
NN	44.11	91.44 ± 0.89	78.22 ± 2.10	75.61 ± 8.22	75.88 ± 6.08	76.80 ± 3.11	54.75 ± 1.99
IN	53.45	89.79 ± 1.29	88.46 ± 1.41	82.43 ± 9.46	71.27 ± 4.62	65.22 ± 5.07	53.86 ± 3.59
DT	65.15	93.93 ± 0.92	73.36 ± 3.43	74.13 ± 2.03	81.62 ± 4.06	75.69 ± 5.04	64.11 ± 4.50
NNP	67.16	90.21 ± 3.95	81.29 ± 7.44	71.09 ± 2.35	73.17 ± 1.79	80.42 ± 2.96	62.11 ± 2.01
JJ	37.96	83.59 ± 1.72	71.73 ± 2.52	71.10 ± 1.72	70.09 ± 0.24	77.91 ± 0.39	63.35 ± 1.19
.	91.03	95.02 ± 0.67	95.36 ± 1.01	95.82 ± 0.16	95.91 ± 0.15	95.99 ± 0.26	94.61 ± 1.01
NNS	66.19	91.75 ± 1.52	80.43 ± 0.40	76.77 ± 8.28	77.16 ± 4.84	84.17 ± 1.60	63.66 ± 2.34
PRP	65.69	93.76 ± 0.49	91.17 ± 0.60	82.31 ± 3.09	84.87 ± 1.96	87.68 ± 5.60	74.13 ± 3.09
RB	28.92	83.33 ± 1.27	75.44 ± 1.58	67.30 ± 5.51	63.78 ± 6.61	67.86 ± 4.38	54.27 ± 6.03
,	86.94	95.23 ± 0.07	89.07 ± 1.74	78.15 ± 4.70	70.08 ± 1.71	93.50 ± 0.24	69.87 ± 1.63
""",
    "ner": """\
label	static	single	pos	dep	con	srl	joint
GPE	76.43	91.40 ± 0.14	82.02 ± 4.14	74.70 ± 1.83	79.97 ± 6.19	84.97 ± 4.25	79.73 ± 6.15
PERSON	85.51	85.90 ± 3.64	85.38 ± 0.70	86.67 ± 3.27	83.65 ± 1.06	83.96 ± 0.67	83.60 ± 2.50
ORG	67.80	73.81 ± 2.16	74.95 ± 8.17	69.01 ± 2.23	68.04 ± 4.28	72.09 ± 1.06	69.99 ± 1.38
DATE	63.17	87.39 ± 5.68	62.51 ± 1.68	78.49 ± 6.87	73.53 ± 8.33	82.25 ± 7.47	83.37 ± 5.63
CARDINAL	66.63	76.33 ± 5.50	66.41 ± 10.63	64.81 ± 9.54	79.22 ± 1.74	73.05 ± 10.98	67.06 ± 1.96
NORP	82.28	93.34 ± 1.87	89.57 ± 0.66	88.47 ± 2.69	82.72 ± 6.28	89.58 ± 3.08	90.37 ± 2.21
PERCENT	99.71	99.81 ± 0.17	98.95 ± 0.60	99.71 ± 0.29	99.43 ± 0.29	99.90 ± 0.17	99.71 ± 0.00
MONEY	97.77	98.30 ± 0.49	96.60 ± 1.44	97.98 ± 1.11	96.60 ± 0.73	97.13 ± 1.93	96.07 ± 0.67
TIME	77.36	79.25 ± 5.91	78.14 ± 5.69	72.48 ± 1.91	78.77 ± 7.12	77.51 ± 4.53	77.05 ± 7.07
ORDINAL	89.74	90.94 ± 1.65	90.26 ± 5.36	92.65 ± 1.07	90.43 ± 1.29	88.03 ± 0.59	84.61 ± 6.43
""",
    "dep": """\
label	static	single	pos	ner	con	srl	joint
prep	72.62	72.80 ± 1.41	69.98 ± 0.90	70.90 ± 1.02	73.11 ± 4.87	76.60 ± 9.03	78.02 ± 1.90
pobj	96.35	95.64 ± 0.69	95.01 ± 0.64	91.70 ± 0.19	94.67 ± 0.84	93.45 ± 0.70	88.59 ± 0.70
nsubj	76.36	76.92 ± 3.26	66.45 ± 3.27	73.78 ± 3.73	73.75 ± 5.32	85.61 ± 3.23	70.69 ± 4.65
det	93.70	94.07 ± 0.37	93.22 ± 0.17	93.87 ± 0.84	95.68 ± 1.25	95.72 ± 0.20	91.66 ± 0.23
root	96.25	96.28 ± 0.03	95.83 ± 0.68	96.49 ± 0.18	95.10 ± 0.94	97.77 ± 1.93	95.18 ± 1.82
nn	89.47	89.08 ± 0.82	84.77 ± 1.02	86.99 ± 0.59	92.59 ± 0.13	89.99 ± 2.44	89.98 ± 0.65
amod	93.33	92.76 ± 0.50	91.38 ± 0.74	91.63 ± 0.73	95.36 ± 0.26	92.70 ± 1.34	93.50 ± 0.67
dobj	94.55	93.76 ± 0.75	94.88 ± 0.39	93.60 ± 1.58	93.46 ± 0.50	92.95 ± 2.01	89.07 ± 1.59
advmod	69.12	70.58 ± 1.60	66.11 ± 1.89	71.85 ± 1.86	69.23 ± 2.06	68.96 ± 6.33	67.92 ± 0.93
aux	84.53	84.70 ± 0.47	84.03 ± 0.54	85.78 ± 0.39	84.22 ± 0.53	86.06 ± 0.56	84.02 ± 0.44
""",
    "con": """\
label	static	single	pos	ner	dep	srl	joint
NP	55.97	85.72 ± 3.76	65.53 ± 5.58	72.55 ± 14.64	67.25 ± 5.42	71.80 ± 14.06	57.58 ± 7.29
ADVP	68.61	68.61 ± 10.83	70.25 ± 5.30	77.86 ± 1.86	70.47 ± 6.46	61.15 ± 2.69	66.59 ± 5.09
ADJP	53.25	67.83 ± 3.98	69.33 ± 5.71	65.40 ± 8.79	57.69 ± 5.49	64.42 ± 1.09	63.43 ± 1.19
VP	62.83	79.29 ± 6.66	66.39 ± 4.78	70.30 ± 16.04	78.07 ± 4.17	54.85 ± 1.34	69.70 ± 5.32
NML	74.89	82.92 ± 0.97	81.51 ± 1.95	82.17 ± 0.89	81.66 ± 1.01	84.24 ± 0.68	76.02 ± 1.25
WHNP	62.26	77.87 ± 3.63	75.12 ± 1.79	73.27 ± 1.20	78.82 ± 1.71	70.63 ± 1.36	71.14 ± 1.55
INTJ	72.67	76.61 ± 1.21	84.84 ± 2.97	78.11 ± 3.74	68.79 ± 5.51	73.13 ± 4.10	74.11 ± 2.90
QP	90.45	94.55 ± 0.74	93.49 ± 0.88	93.73 ± 0.89	91.70 ± 1.01	91.65 ± 0.93	88.28 ± 0.44
WHADVP	69.43	78.99 ± 2.36	80.16 ± 6.42	75.84 ± 7.43	84.04 ± 2.50	72.63 ± 5.92	76.95 ± 2.60
PRT	79.46	80.85 ± 1.22	80.90 ± 4.60	81.20 ± 4.05	83.63 ± 3.42	73.71 ± 3.81	76.34 ± 2.78
""",
    "srl": """\
label	static	single	pos	ner	dep	con	joint
ARG1	71.88	77.75 ± 1.16	78.78 ± 0.35	77.86 ± 0.60	77.08 ± 0.88	79.58 ± 1.30	74.58 ± 0.60
ARG0	74.46	73.24 ± 4.59	75.95 ± 3.69	71.61 ± 1.87	71.17 ± 0.34	74.16 ± 1.00	70.13 ± 1.60
ARG2	80.43	89.69 ± 1.00	89.81 ± 0.29	89.65 ± 0.67	90.15 ± 1.15	89.86 ± 0.22	87.36 ± 0.08
ARGM-TMP	60.55	73.24 ± 4.89	74.48 ± 0.91	70.57 ± 9.00	76.58 ± 3.37	75.59 ± 2.33	68.55 ± 1.76
ARGM-DIS	50.18	70.40 ± 5.73	69.56 ± 5.93	75.67 ± 6.02	69.58 ± 1.42	77.51 ± 0.51	60.41 ± 2.70
ARGM-ADV	40.28	59.01 ± 5.17	61.31 ± 1.72	64.83 ± 6.64	56.48 ± 3.61	63.88 ± 3.07	54.36 ± 0.92
ARGM-MOD	80.46	82.53 ± 5.51	81.77 ± 4.07	84.41 ± 1.59	82.29 ± 1.12	81.59 ± 0.27	78.54 ± 1.37
ARGM-LOC	58.99	79.45 ± 1.50	78.24 ± 1.19	80.68 ± 5.34	72.88 ± 1.79	79.35 ± 0.58	74.22 ± 0.97
ARGM-MNR	69.91	80.67 ± 3.88	79.33 ± 1.40	80.52 ± 5.32	80.20 ± 0.44	80.89 ± 2.97	77.23 ± 0.22
ARGM-NEG	79.39	86.47 ± 2.31	85.51 ± 3.10	90.54 ± 0.87	90.81 ± 0.75	84.75 ± 0.50	88.40 ± 0.46
""",
}

PAPER_MTL = "MTL-5"  # the paper's MTL-5: sampled batches, its own recipe


def _setting(column: str, task: str) -> str:
    if column == "static":
        return PRETRAINED
    if column == "single":
        return "STL"
    if column in ("all", "joint"):
        return PAPER_MTL
    return "MTL +" + column.upper()  # the pairwise model of ``task`` and this task, as RunKey.role names it


def probe_table(task: str) -> pd.DataFrame:
    """The paper's ten most frequent labels of ``task``, most frequent first: per setting
    (``pretrained``, ``STL``, ``MTL +X``, ``MTL-5``) the best-head accuracy's mean and, but for
    the pretrained encoder, its standard deviation (``<setting> sd``)."""
    if task not in _TABLES:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    lines = _TABLES[task].strip().splitlines()
    columns = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        row = {"label": cells[0]}
        for column, cell in zip(columns[1:], cells[1:]):
            name = _setting(column, task)
            mean, _, sd = cell.partition(" ± ")
            row[name] = float(mean)
            if sd:
                row[f"{name} sd"] = float(sd)
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def mean_delta(task: str, setting: str = PAPER_MTL, top: int = 10) -> float:
    """The paper's mean over ``task``'s ``top`` most frequent labels of ``setting`` (``MTL-5``, or
    a pairwise model, ``MTL +NER``) minus STL (points)."""
    if not 1 <= top <= 10:
        raise ValueError(f"the paper's tables are copied for the ten most frequent labels; top must be 1-10, got {top!r}")
    table = probe_table(task)
    if setting not in table:
        valid = [c for c in table if c not in (PRETRAINED, "STL") and not c.endswith(" sd")]
        raise ValueError(f"the paper's {task} table has no setting {setting!r}; valid: {', '.join(valid)}")
    return float((table[setting] - table["STL"]).head(top).mean())


def setting_deltas(task: str, top: int = 10) -> pd.Series:
    """``mean_delta`` of each of the paper's MTL settings for ``task``: its pairwise models
    (``MTL +X``), then MTL-5."""
    settings = [c for c in probe_table(task) if c.startswith("MTL +") and not c.endswith(" sd")] + [PAPER_MTL]
    return pd.Series({s: mean_delta(task, s, top) for s in settings})


def mean_deltas(top: int = 10) -> pd.Series:
    """Per task, the paper's mean over its ``top`` most frequent labels of MTL-5 - STL (points)."""
    return pd.Series({t: mean_delta(t, PAPER_MTL, top) for t in TASKS})
