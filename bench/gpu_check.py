"""One short run that shows mtlheads works on a CUDA GPU, and how fast.

On a machine with CUDA, in a few minutes, it:
1. trains a short STL POS run and an MTL-5 joint run (chapters 2-3's trainer);
2. trains one chapter-6 model (span, generative and type heads) and one chapter-7 model (QA and
   summarisation heads), and decodes with each;
3. runs chapter 4's probes on the STL POS model;
4. checks that the same tiny run agrees on the CPU and the GPU: one batch's loss from the same
   weights (float32 within ``LOSS_FP32`` relative, bfloat16 autocast within ``LOSS_BF16``), and
   a short training run's POS accuracy within ``ACCURACY_POINTS`` points (float32 on both);
and prints each piece's throughput, with a JSON report in ``--out`` (``$OUT/gpu_check.json``
where ``OUT`` is set). Each piece runs on its own: one that fails is reported and the others still
run; the exit status is 1 if any failed or the agreement is outside its tolerance. Pieces left
when ``--minutes`` are spent are skipped, and said so.

On a machine without CUDA it says so and exits 0. ``--rehearse`` runs every piece on the CPU at
a tiny scale (the agreement then compares the CPU with itself): the test suite runs it, so the
script's first real run is not its first run.

The device machine has PyTorch and transformers but not this project's data, encoder package or
some of its requirements. ``--pack DIR`` (run here, with the data fetched) writes what the run
needs into DIR: EWT5 slices as JSON lines, the SQuAD and SciTLDR files, the encoder's config and
tokenizer (no weights: the encoder is random-initialised with MiniLM's shape, which is what
throughput and agreement need; scores then mean nothing and are not checked), and wheels of the
missing packages. It prints the command to run there.

    .venv/bin/python bench/gpu_check.py                 # here: says there is no CUDA, exits 0
    .venv/bin/python bench/gpu_check.py --rehearse      # every piece on the CPU, tiny
    .venv/bin/python bench/gpu_check.py --pack .gpu     # then run the printed command on the GPU machine
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

LOSS_FP32 = 1e-4  # relative difference of one batch's loss, CPU float32 vs GPU float32 (TF32 off)
LOSS_BF16 = 5e-2  # ... vs GPU under bfloat16 autocast (8 mantissa bits)
ACCURACY_POINTS = 1.0  # POS accuracy (points) of the same short float32 run on the CPU and the GPU

# What the pieces import that the device machine's image lacks (its torch, tokenizers and the rest
# are used; transformers is ours, its own being older). Their own needs are all in the image.
WHEELS = ("transformers==5.23.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "nltk==3.10.4")
PACK_SENTENCES = {"train": 4000, "dev": 400, "test": 400}


# Scale ------------------------------------------------------------------------------------------

def scale(rehearse: bool) -> dict:
    if rehearse:
        return {"sentences": 48, "eval": 24, "batch": 8, "examples": 24, "probe": 24, "predict": 8, "tiny": 32,
                "source": 96}
    return {"sentences": 4000, "eval": 400, "batch": 32, "examples": 2000, "probe": 400, "predict": 128, "tiny": 256,
            "source": 256}


# Inputs: the project's own, or a pack -------------------------------------------------------------

def corpus_from(pack: Path | None):
    """EWT5's splits (a ``datasets.DatasetDict``): from the pack's JSON lines, or ``ewt5.load()``."""
    import datasets

    if pack is None:
        from mtlheads.data import ewt5

        return ewt5.load()
    splits = {}
    for split in ("train", "dev", "test"):
        with gzip.open(pack / f"ewt5-{split}.jsonl.gz", "rt") as f:
            splits[split] = datasets.Dataset.from_list([json.loads(line) for line in f])
    return datasets.DatasetDict(splits)


def encoder_maker(pack: Path | None, rehearse: bool):
    """A function that returns a fresh copy of one encoder (on the CPU): a random-init encoder of
    MiniLM's shape from a pack's config, else the packaged MiniLM (a tiny one when rehearsing)."""
    from mtlheads.encoder import Encoder, load_encoder, tiny_encoder

    if pack is None:
        base = tiny_encoder() if rehearse else load_encoder("minilm")
    else:
        from transformers import AutoConfig, AutoTokenizer, BertModel

        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(pack / "encoder", attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(pack / "encoder")
        base = Encoder(BertModel(config, add_pooling_layer=False).eval(), tokenizer)
    return lambda: copy.deepcopy(base)


# Pieces -----------------------------------------------------------------------------------------

def train_piece(tasks, mode, corpus, make, device, s):
    from mtlheads.train import TrainConfig, train

    config = TrainConfig(tasks=tasks, mtl_mode=mode, train_sentences=s["sentences"], dev_sentences=s["eval"],
                         test_sentences=s["eval"], epochs=1, evaluations=1, batch_size=s["batch"],
                         freeze_word_embeddings=True, srl_unary_loss=1.0, device=device)
    result = train(config, corpus, progress=False, encoder=make())
    return {"label": config.label, "steps": result.steps, "train_seconds": round(result.train_seconds, 2),
            "steps_per_second": round(result.steps / result.train_seconds, 2),
            "sentences_per_second": round(result.train_sentences / result.train_seconds, 1),
            "subwords_per_second": round(result.train_subwords / result.train_seconds),
            "test": {t: round(v, 2) for t, v in result.main_scores().items()}}, result


def numreason_piece(make, device, s):
    from mtlheads import numreason

    config = numreason.NumReasonConfig(span_examples=s["examples"], arithmetic_examples=s["examples"] // 2,
                                       batch_size=s["batch"] // 2, max_source=s["source"], device=device)
    result = numreason.train(config, progress=False, encoder=make())
    model = numreason.build(config, encoder=make())
    model.load_state_dict(result.state_dict)
    model.eval()
    items = numreason.arithmetic_items(numreason.squad_parts(config)[1][:400])[:s["predict"]]
    start = time.perf_counter()
    predictions = numreason.predict(model, items, config.max_source, progress=False)
    seconds = time.perf_counter() - start
    examples = sum(result.examples.values())
    return {"examples": examples, "steps": result.steps, "train_seconds": round(result.train_seconds, 2),
            "examples_per_second": round(examples / result.train_seconds, 1),
            "predictions_per_second": round(len(predictions) / seconds, 1)}


def readersum_piece(make, device, s):
    from mtlheads import readersum
    from mtlheads.data import scitldr

    config = readersum.ReaderSumConfig(qa_examples=s["examples"], summ_examples=s["examples"] // 2,
                                       batch_size=s["batch"] // 2, max_source=s["source"], max_summary=32,
                                       device=device)
    result = readersum.train(config, progress=False, encoder=make())
    model = readersum.build(config, encoder=make())
    model.load_state_dict(result.state_dict)
    model.eval()
    documents = scitldr.load("test")[:s["predict"]]
    start = time.perf_counter()
    summaries = readersum.summarize(model, [(d["document"], None) for d in documents], config.max_source,
                                    progress=False)
    seconds = time.perf_counter() - start
    examples = sum(result.examples.values())
    return {"examples": examples, "steps": result.steps, "train_seconds": round(result.train_seconds, 2),
            "examples_per_second": round(examples / result.train_seconds, 1),
            "summaries_per_second": round(len(summaries) / seconds, 1)}


def probe_piece(result, corpus, make, s):
    from mtlheads import probes
    from mtlheads.train import build_model, corpus_split

    model = build_model(result.config, corpus_split(corpus, "train", result.config.train_sentences), encoder=make())
    model.load_state_dict(result.state_dict)
    model.eval()
    test = corpus_split(corpus, "test", s["probe"])
    fit = corpus_split(corpus, "train", s["probe"])
    start = time.perf_counter()
    probed = probes.probe_all(probes.read_heads(model.encoder, test, progress=False),
                              probes.read_heads(model.encoder, fit, tasks=probes.CENTROID_TASKS, progress=False))
    seconds = time.perf_counter() - start
    return {"sentences": len(test) + len(fit), "seconds": round(seconds, 2),
            "sentences_per_second": round((len(test) + len(fit)) / seconds, 1), "probes": len(probed)}


def agreement_piece(corpus, make, device, s):
    """One batch's loss from the same weights on the CPU and ``device``; a short run on both."""
    from mtlheads.train import LossBalancer, TrainConfig, build_model, corpus_split, step_loss, train

    sentences = corpus_split(corpus, "train", 16)
    tasks = ("pos", "ner", "dep", "con")
    config = TrainConfig(tasks=tasks, mtl_mode="joint", device="cpu")
    torch.manual_seed(0)
    cpu_model = build_model(config, sentences, encoder=make()).eval()  # eval: no dropout, same numbers
    other = copy.deepcopy(cpu_model).to(device)
    batch = cpu_model.encoder.tokenize([x["tokens"] for x in sentences])
    n = max(len(x["tokens"]) for x in sentences)
    targets = {t: cpu_model.decoders[t].targets(sentences, n) for t in tasks}
    losses = {}
    for name, model, bf16 in (("cpu", cpu_model, False), ("fp32", other, False), ("bf16", other, True)):
        with torch.no_grad():
            losses[name] = float(step_loss(model, batch, targets, LossBalancer(tasks), None, bf16))
    rel = {k: abs(losses[k] - losses["cpu"]) / abs(losses["cpu"]) for k in ("fp32", "bf16")}
    short = dict(tasks=("pos",), train_sentences=s["tiny"], dev_sentences=s["eval"], test_sentences=s["eval"],
                 epochs=2, evaluations=1, batch_size=16, freeze_word_embeddings=True)
    runs = {d: train(TrainConfig(**short, device=d, bf16=False), corpus, progress=False, encoder=make())
            for d in ("cpu", device)}
    accuracy = {d: r.main_scores()["pos"] for d, r in runs.items()}
    gap = abs(accuracy["cpu"] - accuracy[device])
    ok = rel["fp32"] <= LOSS_FP32 and rel["bf16"] <= LOSS_BF16 and gap <= ACCURACY_POINTS
    return {"batch_loss": {k: round(v, 6) for k, v in losses.items()},
            "relative_difference": {k: float(f"{v:.3g}") for k, v in rel.items()},
            "tolerance": {"fp32": LOSS_FP32, "bf16": LOSS_BF16, "accuracy_points": ACCURACY_POINTS},
            "short_run_pos_accuracy": {d: round(a, 2) for d, a in accuracy.items()},
            "accuracy_gap_points": round(gap, 3), "agrees": ok}


# Driver -----------------------------------------------------------------------------------------

def environment(device: str) -> dict:
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(name=props.name, memory_gib=round(props.total_memory / 2 ** 30, 1),
                    bf16=torch.cuda.is_bf16_supported(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return info


def run(args) -> int:
    device = "cpu" if args.rehearse else "cuda"
    pack = Path(args.pack_dir) if args.pack_dir else None
    if pack is not None:
        os.environ.setdefault("MTLHEADS_DATA_DIR", str(pack / "data"))
    s = scale(args.rehearse)
    report = {"environment": environment(device), "scale": s, "pieces": {}}
    started = time.perf_counter()
    print(f"gpu_check on {report['environment']}", flush=True)
    corpus = corpus_from(pack)
    make = encoder_maker(pack, args.rehearse)
    state: dict = {}

    def stl():
        out, state["stl"] = train_piece(("pos",), "sample", corpus, make, device, s)
        return out

    pieces = [("STL POS", stl),
              ("MTL-5 joint", lambda: train_piece(("pos", "ner", "dep", "con", "srl"), "joint", corpus, make,
                                                   device, s)[0]),
              ("chapter 6 model", lambda: numreason_piece(make, device, s)),
              ("chapter 7 model", lambda: readersum_piece(make, device, s)),
              ("probes (STL POS model)", lambda: probe_piece(state["stl"], corpus, make, s)),
              ("CPU/GPU agreement", lambda: agreement_piece(corpus, make, device, s))]
    failed = []
    for name, piece in pieces:
        if time.perf_counter() - started > 60 * args.minutes:
            report["pieces"][name] = {"skipped": f"the {args.minutes} minutes were spent"}
            failed.append(name)
            print(f"{name}: skipped (time)", flush=True)
            continue
        start = time.perf_counter()
        try:
            out = piece()
        except Exception as err:  # one piece's failure is reported; the others still run
            out = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=8)}
            failed.append(name)
        out["wall_seconds"] = round(time.perf_counter() - start, 2)
        if out.get("agrees") is False:
            failed.append(name)
        report["pieces"][name] = out
        print(f"{name}: {json.dumps({k: v for k, v in out.items() if k != 'traceback'})}", flush=True)
        if "traceback" in out:
            print(out["traceback"], flush=True)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["failed"] = failed
    out_path = args.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out_path:
        Path(out_path).write_text(json.dumps(report, indent=1))
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all pieces passed'} in {report['total_seconds']} s",
          flush=True)
    return 1 if failed else 0


def pack_inputs(folder: Path) -> None:
    """Write what a run on the device machine needs into ``folder`` (see the module doc)."""
    from mtlheads.data import ewt5, sources
    from mtlheads.encoder import resolve_encoder

    folder.mkdir(parents=True, exist_ok=True)
    corpus = ewt5.load()
    for split, n in PACK_SENTENCES.items():
        with gzip.open(folder / f"ewt5-{split}.jsonl.gz", "wt") as f:
            for record in corpus[split].select(range(min(n, len(corpus[split])))):
                f.write(json.dumps(record) + "\n")
    for name in ("SQuAD", "scitldr"):
        where = sources.fetch(name)
        shutil.copytree(where, folder / "data" / where.name, dirs_exist_ok=True)
    encoder = Path(resolve_encoder("minilm"))
    (folder / "encoder").mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(encoder / name, folder / "encoder" / name)
    wheels = folder / "wheels"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
               "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
               "-d", str(wheels), *WHEELS]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"could not download the wheels ({done.stderr.strip().splitlines()[-1:]}); "
              f"download {', '.join(WHEELS)} for Python 3.12 into {wheels} by hand")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20
    print(f"packed {folder} ({size:.1f} MiB; the device tool carries at most 64 MiB with the working tree).\n"
          f"Ignore it in git (echo /{folder.name}/ >> .git/info/exclude), then on the GPU machine run, carrying "
          f"{folder.name}:\n"
          f"  python3 -m pip install -q --no-index --no-deps --target /tmp/site {folder.name}/wheels/*.whl && "
          f"PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --pack-dir {folder.name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearse", action="store_true", help="every piece on the CPU, at a tiny scale")
    parser.add_argument("--pack", metavar="DIR", help="write the inputs of a run on the device machine into DIR")
    parser.add_argument("--pack-dir", metavar="DIR", help="read the inputs from a folder --pack wrote")
    parser.add_argument("--minutes", type=float, default=4.5, help="skip the pieces left after this long")
    parser.add_argument("--out", help="where to write the JSON report")
    args = parser.parse_args(argv)
    if args.pack:
        pack_inputs(Path(args.pack))
        return 0
    if not args.rehearse and not torch.cuda.is_available():
        print("gpu_check: this machine has no CUDA device; nothing to check (use --rehearse to run every "
              "piece on the CPU)")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
