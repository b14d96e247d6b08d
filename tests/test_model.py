import pytest
import torch

from mtlheads.encoder import tiny_encoder
from mtlheads.heads import ClassificationHead, SpanQAHead
from mtlheads.model import MultiTaskModel


def qa(ids, start, end):
    return {"input_ids": ids, "context_mask": [False, True, True, True][:len(ids)], "start": start, "end": end,
            "task": "qa"}


def test_each_head_trains_on_its_routed_rows_only():
    torch.manual_seed(0)
    encoder = tiny_encoder()
    model = MultiTaskModel(encoder, {"qa": SpanQAHead(encoder.hidden_size),
                                     "kind": ClassificationHead(encoder.hidden_size, ("qa", "other"))},
                           routes={"kind": None})
    other = {"input_ids": [101, 2000, 102], "task": "other"}
    examples = [qa([101, 2023, 2003, 102], 1, 2), other, qa([101, 2054, 102], 1, 1)]
    batch = model.collate(examples)
    assert batch["input_ids"].shape == (3, 4) and batch["attention_mask"].sum(1).tolist() == [4, 3, 3]
    assert batch["targets"]["qa"]["rows"].tolist() == [0, 2]
    assert batch["targets"]["kind"]["labels"].tolist() == [0, 1, 0]  # every row, labelled by its task
    assert set(model.losses(batch)) == {"qa", "kind"}
    # a batch without QA rows has no QA loss; the QA loss of a mixed batch is that of its QA rows alone
    assert set(model.losses(model.collate([other]))) == {"kind"}
    model.eval()
    assert torch.allclose(model.losses(batch)["qa"], model.losses(model.collate([examples[0], examples[2]]))["qa"],
                          atol=1e-6)
    assert {id(p) for p in model.new_parameters()} == {id(p) for p in model.decoders.parameters()}


def test_a_route_for_a_missing_head_is_named():
    encoder = tiny_encoder()
    with pytest.raises(ValueError, match=r"\['summ'\].*its heads: qa"):
        MultiTaskModel(encoder, {"qa": SpanQAHead(encoder.hidden_size)}, routes={"summ": ("summ",)})
