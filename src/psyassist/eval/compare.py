"""Base vs tuned on one suite: multiple choice, generation metrics and side-by-side replies, one report.

    psyassist compare --base default --tuned default+runs/demo/adapter --suite suites/sample.yaml

Models: `--base M` and `--tuned M+ADAPTER_DIR` (a LoRA adapter on M), `--tuned +ADAPTER_DIR`
or `--tuned-adapter ADAPTER_DIR` (the adapter on the base model), or `--tuned M` (a merged or any
other model).  A `--tuned` value that is an existing path is always a model, never split at '+'.
Each model is loaded ONCE and runs every stage before the next one loads (one model in memory
at a time); the stages reuse `eval mcq` and `eval gen` through their `loaded=` parameter.

Suite YAML (paths relative to the suite file; 'sample' = the packaged sample MCQ / corpus):

    seed: 0
    stages:
      - {type: mcq, bench: sample, formats: all, mode: logprob}
      - {type: gen, data: sample, turns: last, limit: 8, metrics: [bleu, rouge, distinct, length]}
      - {type: replies, prompts: ["这段时间我不开心"]}

An `imhi` stage runs `eval imhi` (label F1 + explanation metrics, McNemar on label correctness); a
`notes` stage runs `eval notes` (the app drafts a session note for each CPsyExam case: parse rate,
items per section, ROUGE and cosine against the key, the judge if configured, paired differences per
case, and two drafts side by side):

      - {type: notes, limit: 20, max_new_tokens: 768}   # data: the CPsyExam folder (default: as eval notes)

Outputs in OUT (default results/compare-SUITE): report.md, a self-contained report.html
(charts embedded as data URIs, no external asset), the charts as PNG files, compare.json (every
number the report shows) and each side's raw stage results under OUT/base and OUT/tuned
(mcq and notes: the stage's results JSON; gen: `eval gen`'s directory; replies: a JSON of the replies).
"""

from __future__ import annotations

import datetime as dt
import gc
import glob
import hashlib
import json
import os
import platform
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from psyassist.data.io import write_json_atomic
from psyassist.errors import PsyassistError
from psyassist.eval.notes import PARTS as PARTS_SCORED
from psyassist.eval.notes import TEMPLATE_PARTS
from psyassist.ui import console, warn

KIND = "psyassist.compare"
SIDES = ("base", "tuned")
GEN_METRICS = ("bleu", "rouge", "embedding", "bertscore", "distinct", "length")
DEFAULT_GEN_METRICS = ["bleu", "rouge", "embedding", "distinct", "length"]  # bertscore needs a local model dir
NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")  # a stage name is a file name in OUT
ALPHA = 0.05


# --- models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    model: str
    adapter: str | None = None

    def label(self) -> str:
        return f"{self.model}+{self.adapter}" if self.adapter else self.model


def _is_adapter(d: str) -> bool:
    return (Path(d) / "adapter_config.json").is_file()


def parse_model_spec(value: str, option: str, base: ModelSpec | None = None) -> ModelSpec:
    """MODEL, MODEL+ADAPTER_DIR or (with `base`) +ADAPTER_DIR; an existing path is a model as is."""
    syntax = f"{option} takes MODEL, MODEL+ADAPTER_DIR" + (" or +ADAPTER_DIR (on --base)" if base else "")
    if not value.strip():
        raise PsyassistError(f"{option} is empty: {syntax}")
    if Path(value).expanduser().exists() or "+" not in value:
        return ModelSpec(value)
    if value.startswith("+"):
        if base is None:
            raise PsyassistError(f"{option} {value}: {syntax}")
        if base.adapter:
            raise PsyassistError(f"{option} {value}: --base already has an adapter; write the tuned model in full "
                                 "as MODEL+ADAPTER_DIR")
        model, adapter = base.model, value[1:]
    else:
        # split at the '+' whose right side is an adapter directory (model ids never hold '+')
        cuts = [i for i, ch in enumerate(value) if ch == "+"]
        good = [i for i in cuts if _is_adapter(value[i + 1:])]
        i = good[0] if good else cuts[0]
        model, adapter = value[:i], value[i + 1:]
    if not _is_adapter(adapter):
        why = "no such directory" if not Path(adapter).exists() else "no adapter_config.json in it"
        raise PsyassistError(f"{option} {value}: ADAPTER_DIR '{adapter}' is not a LoRA adapter directory ({why}); "
                             f"{syntax}. A training run writes its adapter to OUTPUT_DIR/adapter.")
    return ModelSpec(model, adapter)


def resolve_sides(base: str, tuned: str | None, tuned_adapter: str | None) -> dict[str, ModelSpec]:
    b = parse_model_spec(base, "--base")
    if (tuned is None) == (tuned_adapter is None):
        raise PsyassistError("give exactly one of --tuned (MODEL+ADAPTER_DIR, +ADAPTER_DIR or MODEL) and "
                             "--tuned-adapter ADAPTER_DIR")
    t = parse_model_spec(tuned if tuned is not None else f"+{tuned_adapter}",
                         "--tuned" if tuned is not None else "--tuned-adapter", base=b)
    if t == b:
        raise PsyassistError(f"--base and --tuned are the same model ({b.label()}): nothing to compare")
    return {"base": b, "tuned": t}


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def adapter_check(spec: ModelSpec) -> dict | None:
    """The adapter's recorded base vs the model it is loaded onto, and the adapter weights' sha256."""
    if not spec.adapter:
        return None
    from psyassist.models import DEFAULT_ALIASES, resolve_model

    a = Path(spec.adapter)
    cfg = json.loads((a / "adapter_config.json").read_text(encoding="utf-8"))
    trained_on = cfg.get("base_model_name_or_path")
    weights = a / "adapter_model.safetensors"
    out = {"trained_on": trained_on, "rank": cfg.get("r"), "alpha": cfg.get("lora_alpha"),
           "weights_sha256": _sha256(weights) if weights.is_file() else None}
    if not trained_on:
        out["base_check"] = "unknown: adapter_config.json records no base model"
        return out
    loaded_path = None
    if spec.model in DEFAULT_ALIASES or Path(spec.model).is_dir():
        loaded_path = Path(resolve_model(spec.model, weights=False)[0]).resolve()
    same = trained_on == spec.model or (loaded_path is not None and Path(trained_on).resolve() == loaded_path)
    out["base_check"] = "match" if same else f"MISMATCH: trained on {trained_on}, loaded onto {spec.model}"
    return out


# --- suite ----------------------------------------------------------------------------------------


def _str(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _pos(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _paths(v) -> bool:
    return _str(v) or (isinstance(v, list) and bool(v) and all(_str(x) for x in v))


_BOOL = (lambda v: isinstance(v, bool), "true or false")
_POS = (_pos, "an integer >= 1")
_STR = (_str, "a non-empty string")
_PATHS = (_paths, "a path (relative to the suite file), 'sample', or a list of them")
COMMON_KEYS = {"type": (_str, "a stage type"), "name": (lambda v: _str(v) and bool(NAME_RE.match(v)),
                                                         "a name of letters, digits, '.', '_' and '-'")}
STAGE_KEYS = {
    "mcq": {"bench": _PATHS, "formats": _STR, "mode": (lambda v: v in ("logprob", "generate"), "logprob or generate"),
            "limit": _POS, "shuffle_options": _BOOL, "fewshot": (lambda v: isinstance(v, int) and v >= 0, ">= 0"),
            "dev": _PATHS, "thinking": _BOOL, "max_new_tokens": _POS, "batch_size": _POS, "layout": _STR},
    "gen": {"data": _PATHS, "turns": (lambda v: v in ("all", "last"), "all or last"), "limit": _POS,
            "metrics": (lambda v: isinstance(v, list) and bool(v) and set(v) <= set(GEN_METRICS),
                        f"a list of {', '.join(GEN_METRICS)}"),
            "max_new_tokens": _POS, "batch_size": _POS, "lang": (lambda v: v in ("auto", "zh", "en"), "auto, zh or en"),
            "embed_model": _STR, "bertscore_model": _STR, "format": _STR, "thinking": _BOOL},
    "imhi": {"data": _STR, "split": (lambda v: v in ("complete", "instruction"), "complete or instruction"),
             "datasets": (lambda v: _str(v) or (isinstance(v, list) and bool(v) and all(_str(x) for x in v)),
                          "a dataset name or a list of them (DR, SAD, ...)"),
             "limit": _POS, "max_new_tokens": _POS, "batch_size": _POS, "thinking": _BOOL, "embed_model": _STR,
             "bertscore_model": _STR},
    "replies": {"prompts": (lambda v: isinstance(v, list) and bool(v) and all(_str(x) for x in v),
                            "a non-empty list of prompt strings"),
                "system": _STR, "max_new_tokens": _POS, "thinking": _BOOL},
    "notes": {"data": _STR, "template": (lambda v: v in TEMPLATE_PARTS, f"one of {', '.join(TEMPLATE_PARTS)}"),
              "limit": _POS, "max_new_tokens": _POS, "batch_size": _POS, "embed_model": _STR, "judge_endpoint": _STR,
              "judge_model": _STR, "judge_api_key_env": _STR},
}
REQUIRED = {"mcq": ("bench",), "gen": ("data",), "imhi": (), "replies": ("prompts",), "notes": ()}
SUITE_KEYS = {"name": _STR, "description": _STR, "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool),
                                                          "an integer"),
              "stages": (lambda v: isinstance(v, list) and bool(v), "a non-empty list of stages")}


@dataclass
class Stage:
    index: int
    type: str
    name: str
    opts: dict


@dataclass
class Suite:
    path: Path
    sha256: str
    name: str
    description: str
    seed: int
    stages: list[Stage]


def _resolve_paths(v, base_dir: Path, kind: str, where: str) -> list[str]:
    """'sample' → the packaged file; anything else relative to the suite file; must exist."""
    from psyassist.data.samples import sample_corpus_path

    out = []
    for p in [v] if isinstance(v, str) else v:
        if p == "sample":
            out.append("sample" if kind == "mcq" else str(sample_corpus_path()))
            continue
        full = Path(p).expanduser()
        full = full if full.is_absolute() else base_dir / full
        if not full.exists() and not glob.glob(str(full)):
            raise PsyassistError(f"{where}: '{p}' not found (looked for {full}; paths are relative to the suite "
                                 "file, or 'sample' for the packaged data)")
        out.append(str(full))
    return out


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite; every error names the file, the stage index and the key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise PsyassistError(f"cannot read suite {p}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise PsyassistError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise PsyassistError(f"{p}: expected a mapping with 'stages:' (and optionally name, description, seed)")
    for k, v in raw.items():
        if k not in SUITE_KEYS:
            raise PsyassistError(f"{p}: unknown key '{k}'; known: {', '.join(SUITE_KEYS)}")
        ok, expected = SUITE_KEYS[k]
        if not ok(v):
            raise PsyassistError(f"{p}: '{k}' must be {expected}, got {v!r}")
    if "stages" not in raw:
        raise PsyassistError(f"{p}: no 'stages:' list (each stage has type: {', '.join(STAGE_KEYS)})")
    stages, names = [], set()
    for i, st in enumerate(raw["stages"]):
        where = f"{p}: stages[{i}]"
        if not isinstance(st, dict) or "type" not in st:
            raise PsyassistError(f"{where}: expected a mapping with 'type:' ({', '.join(STAGE_KEYS)}), got {st!r}")
        t = st["type"]
        if t not in STAGE_KEYS:
            raise PsyassistError(f"{where}: unknown stage type {t!r}; supported: {', '.join(STAGE_KEYS)}")
        where = f"{where} ({t})"
        keys = {**COMMON_KEYS, **STAGE_KEYS[t]}
        for k, v in st.items():
            if k not in keys:
                raise PsyassistError(f"{where}: unknown key '{k}'; a {t} stage takes {', '.join(sorted(keys))}")
            ok, expected = keys[k]
            if not ok(v):
                raise PsyassistError(f"{where}: '{k}' must be {expected}, got {v!r}")
        missing = [k for k in REQUIRED[t] if k not in st]
        if missing:
            raise PsyassistError(f"{where}: missing required key(s) {', '.join(missing)}")
        name = st.get("name", t if t not in names else f"{t}-{i}")
        if name in names:
            raise PsyassistError(f"{where}: name '{name}' is used twice; stage names must be unique")
        names.add(name)
        opts = {k: v for k, v in st.items() if k not in COMMON_KEYS}
        for k in ("bench", "dev", "data"):
            if k in opts:
                opts[k] = _resolve_paths(opts[k], p.parent, t, f"{where}: '{k}'")
        if t in ("imhi", "notes"):  # one folder; absent: $PSYASSIST_TEST_DATA or the fetch cache
            opts["data"] = opts["data"][0] if "data" in opts else None
            if isinstance(opts.get("datasets"), list):
                opts["datasets"] = ",".join(opts["datasets"])
        if t == "notes" and ("judge_endpoint" in opts) != ("judge_model" in opts):
            raise PsyassistError(f"{where}: judge_endpoint and judge_model go together")
        if t == "gen" and "bertscore" in opts.get("metrics", []) and "bertscore_model" not in opts:
            raise PsyassistError(f"{where}: metric 'bertscore' needs bertscore_model: a local model directory")
        stages.append(Stage(i, t, name, opts))
    suite = Suite(p, _sha256(p), raw.get("name", p.stem), raw.get("description", ""), raw.get("seed", 0), stages)
    return suite


# --- running --------------------------------------------------------------------------------------


@dataclass
class CompareConfig:
    base: str
    suite: str
    tuned: str | None = None
    tuned_adapter: str | None = None
    out: str = ""
    limit: int | None = None
    seed: int | None = None  # None: the suite's seed
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise PsyassistError(f"--limit must be >= 1, got {self.limit}")

    def command(self, sides: dict[str, ModelSpec], seed: int) -> str:
        """The CLI line that reproduces this run (tuned as MODEL+ADAPTER), paths relative to the cwd if below it."""
        def spec(s: ModelSpec) -> str:
            return relpath(s.model) + (f"+{relpath(s.adapter)}" if s.adapter else "")

        a = ["psyassist", "compare", "--base", spec(sides["base"]), "--tuned", spec(sides["tuned"]),
             "--suite", relpath(self.suite), "-o", relpath(self.out), "--seed", str(seed)]
        a += ["--limit", str(self.limit)] if self.limit else []
        a += ["--dtype", self.dtype] if self.dtype != "auto" else []
        a += ["--device", self.device] if self.device else []
        return shlex.join(a)


def relpath(x: str) -> str:
    """`x` relative to the current directory when it is an existing path below it; else unchanged."""
    q = Path(x).expanduser()
    if not q.exists():
        return x
    r = os.path.relpath(q.resolve(), Path.cwd().resolve())
    return x if r.startswith("..") else r


def _cap(n: int | None, limit: int | None) -> int | None:
    return min(x for x in (n, limit) if x is not None) if (n or limit) else None


def _run_mcq(stage: Stage, loaded, spec: ModelSpec, out: Path, seed: int, cfg: CompareConfig) -> dict:
    from psyassist.eval.mcq import MCQConfig, run_mcq

    o = stage.opts
    mcfg = MCQConfig(bench=o["bench"], model=spec.model, adapter=spec.adapter, formats=o.get("formats", "all"),
                     mode=o.get("mode", "logprob"), fewshot=o.get("fewshot", 0), dev=o.get("dev", []),
                     thinking=o.get("thinking", False), shuffle_options=o.get("shuffle_options", False),
                     batch_size=o.get("batch_size", 8), max_new_tokens=o.get("max_new_tokens", 512), seed=seed,
                     limit=_cap(o.get("limit"), cfg.limit), layout=o.get("layout", "auto"), dtype=cfg.dtype,
                     device=cfg.device)
    return run_mcq(mcfg, out / f"{stage.name}.json", loaded=loaded)


def _gen_config(stage: Stage, spec: ModelSpec, seed: int, cfg: CompareConfig):
    from psyassist.eval.gen import GenConfig

    o = stage.opts
    metrics = o.get("metrics", DEFAULT_GEN_METRICS)
    return GenConfig(data=o["data"], model=spec.model, adapter=spec.adapter, fmt=o.get("format", "auto"),
                     turns=o.get("turns", "all"), limit=_cap(o.get("limit"), cfg.limit),
                     thinking=o.get("thinking", False), batch_size=o.get("batch_size", 8),
                     max_new_tokens=o.get("max_new_tokens", 512), seed=seed, lang=o.get("lang", "auto"),
                     embed_model=o.get("embed_model", "default") if "embedding" in metrics else "none",
                     bertscore_model=o.get("bertscore_model") if "bertscore" in metrics else None,
                     restart=True, dtype=cfg.dtype, device=cfg.device)  # restart: never resume another model's run


def _run_gen(stage: Stage, loaded, spec: ModelSpec, out: Path, seed: int, cfg: CompareConfig) -> dict:
    from psyassist.eval.gen import run_gen

    res = run_gen(_gen_config(stage, spec, seed, cfg), out / stage.name, loaded=loaded)
    scores = (out / stage.name / "scores.jsonl").read_text(encoding="utf-8").splitlines()
    return {**res, "per_item": [json.loads(x) for x in scores]}


def _run_replies(stage: Stage, loaded, spec: ModelSpec, out: Path, seed: int, cfg: CompareConfig) -> dict:
    """Each prompt is answered right after torch.manual_seed(seed): both models draw from the same RNG state."""
    import torch

    from psyassist.infer.engine import Sampling, generate, split_think

    o = stage.opts
    thinking = o.get("thinking", False)
    loaded = loaded.with_thinking(thinking)
    sampling = Sampling.recommended(thinking, max_new_tokens=o.get("max_new_tokens", 256), seed=seed)
    prompts = o["prompts"][:cfg.limit] if cfg.limit else o["prompts"]
    rows = []
    for i, text in enumerate(prompts):
        msgs = ([{"role": "system", "content": o["system"]}] if "system" in o else []) + [
            {"role": "user", "content": text}]
        rendered = loaded.renderer.inference_prompt(msgs)
        torch.manual_seed(seed)
        g = generate(loaded, [rendered], sampling)[0]
        reasoning, answer = split_think(g.text)
        rows.append({"id": i, "prompt": text, "rendered": rendered, "reply": answer, "reasoning": reasoning,
                     "finish": g.finish, "new_tokens": g.new_tokens, "seconds": g.seconds})
    res = {"kind": "psyassist.compare.replies", "model": loaded.describe(), "sampling": sampling.to_dict(),
           "system": o.get("system"), "replies": rows}
    write_json_atomic(out / f"{stage.name}.json", res)
    return res


def _run_imhi(stage: Stage, loaded, spec: ModelSpec, out: Path, seed: int, cfg: CompareConfig) -> dict:
    from psyassist.eval.imhi import ImhiConfig, run_imhi

    o = stage.opts
    icfg = ImhiConfig(model=spec.model, adapter=spec.adapter, data=o["data"], split=o.get("split", "complete"),
                      datasets=o.get("datasets"), limit=_cap(o.get("limit"), cfg.limit),
                      batch_size=o.get("batch_size", 8), max_new_tokens=o.get("max_new_tokens", 256),
                      thinking=o.get("thinking", False), seed=seed, embed_model=o.get("embed_model", "none"),
                      bertscore_model=o.get("bertscore_model"), restart=True, dtype=cfg.dtype, device=cfg.device)
    res = run_imhi(icfg, out / stage.name, loaded)
    lines = (out / stage.name / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return {**res, "per_item": [{"id": p["id"], "dataset": p["dataset"], "correct": p["label"] == p["gold_label"]}
                                for p in map(json.loads, lines)]}


def _run_notes(stage: Stage, loaded, spec: ModelSpec, out: Path, seed: int, cfg: CompareConfig) -> dict:
    from psyassist.eval.notes import NotesConfig, run_notes

    o = stage.opts
    ncfg = NotesConfig(model=spec.model, adapter=spec.adapter, data=o["data"], template=o.get("template", "seed004"),
                       limit=_cap(o.get("limit"), cfg.limit), batch_size=o.get("batch_size", 4),
                       max_new_tokens=o.get("max_new_tokens", 768), seed=seed, embed_model=o.get("embed_model", "default"),
                       judge_endpoint=o.get("judge_endpoint"), judge_model=o.get("judge_model"),
                       judge_api_key_env=o.get("judge_api_key_env"), dtype=cfg.dtype, device=cfg.device)
    return run_notes(ncfg, out / f"{stage.name}.json", loaded=loaded)


RUNNERS = {"mcq": _run_mcq, "gen": _run_gen, "imhi": _run_imhi, "replies": _run_replies, "notes": _run_notes}


def machine() -> dict:
    import torch

    m = {"platform": platform.platform(), "arch": platform.machine(), "cpus": os.cpu_count(),
         "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        m["gpu"] = torch.cuda.get_device_name(0)
    return m


def run_compare(cfg: CompareConfig) -> dict:
    """Run the suite on base then tuned (one load each), combine, write the report files; returns compare.json."""
    import torch

    from psyassist.eval.mcq import versions
    from psyassist.eval.report import write_report
    from psyassist.infer.engine import MERGE_MANIFEST, load

    suite = load_suite(cfg.suite)
    sides = resolve_sides(cfg.base, cfg.tuned, cfg.tuned_adapter)
    seed = suite.seed if cfg.seed is None else cfg.seed
    out = Path(cfg.out)
    t0 = time.perf_counter()
    raw: dict[str, dict] = {}
    models: dict[str, dict] = {}
    for side in SIDES:
        spec = sides[side]
        console.print(f"[bold]{side}[/]: loading {spec.label()}")
        t_load = time.perf_counter()
        merged = spec.adapter is None and (Path(spec.model) / MERGE_MANIFEST).is_file()  # report its base + adapter
        loaded = load(spec.model, adapter=spec.adapter, dtype=cfg.dtype, device=cfg.device, merged=merged)
        models[side] = {**loaded.describe(), "spec": spec.label(), "adapter_check": adapter_check(spec),
                        "path": str(getattr(loaded.model, "name_or_path", "") or spec.model),
                        "load_seconds": round(time.perf_counter() - t_load, 2)}
        check = models[side]["adapter_check"]
        if check and check["base_check"] != "match":
            warn(f"{side} adapter {spec.adapter}: {check['base_check']}")
        raw[side] = {}
        for st in suite.stages:
            console.print(f"[bold]{side}[/]: stage {st.index} {st.name} ({st.type})")
            t_st = time.perf_counter()
            raw[side][st.name] = RUNNERS[st.type](st, loaded, spec, out / side, seed, cfg)
            raw[side][st.name]["_seconds"] = round(time.perf_counter() - t_st, 2)
        del loaded  # one model in memory at a time
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report = {
        "kind": KIND, "version": 1, "command": cfg.command(sides, seed),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "suite": {"path": relpath(str(suite.path)), "sha256": suite.sha256, "name": suite.name,
                  "description": suite.description, "stages": len(suite.stages)},
        "seed": seed, "limit": cfg.limit, "models": models, "versions": versions(), "machine": machine(),
        "stages": [combine(st, raw["base"][st.name], raw["tuned"][st.name]) for st in suite.stages],
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_report(report, out)
    return report


# --- combining base and tuned ---------------------------------------------------------------------


def combine(stage: Stage, base: dict, tuned: dict) -> dict:
    head = {"name": stage.name, "type": stage.type, "index": stage.index,
            "seconds": {"base": base.get("_seconds"), "tuned": tuned.get("_seconds")}}
    return {**head, **{"mcq": combine_mcq, "gen": combine_gen, "imhi": combine_imhi,
                       "replies": combine_replies, "notes": combine_notes}[stage.type](base, tuned)}


def combine_mcq(a: dict, b: dict) -> dict:
    """Per format: both accuracies with Wilson intervals, the paired McNemar test, unparsed counts."""
    from psyassist.eval.mcq import compare_results

    cmp = compare_results(a, b)
    sa = {s["format"]: s for s in a["summary"]}
    sb = {s["format"]: s for s in b["summary"]}
    rows = []
    for f, c in cmp["formats"].items():
        x, y = sa[f], sb[f]
        rows.append({"format": f, "n": c["n_paired"],
                     "base": {k: x[k] for k in ("accuracy", "wilson95", "unparsed", "correct", "n")},
                     "tuned": {k: y[k] for k in ("accuracy", "wilson95", "unparsed", "correct", "n")},
                     "delta": c["delta"], "base_only_right": c["a_only_right"], "tuned_only_right": c["b_only_right"],
                     "p_value": c["mcnemar"]["p_value"], "test": c["mcnemar"]["method"], "chance": x["chance"]})
    example = {f: v["items"][0]["prompt"] for f, v in a["formats"].items() if v["items"]}
    return {"bench": a["bench"]["sources"], "files": {relpath(f): h for f, h in a["bench"]["files"].items()}, "n_items": a["bench"]["n_items"],
            "mode": a["mode"], "rule": a["scoring"]["rule"], "multi_answer_rule": a["scoring"]["multi_answer_rule"],
            "thinking": a["scoring"]["thinking"], "shuffle_options": a["config"]["shuffle_options"],
            "templates": {f: v["template"] for f, v in a["formats"].items()}, "example_prompts": example,
            "commands": {"base": a["command"], "tuned": b["command"]}, "warnings": cmp["warnings"], "rows": rows}


def _gen_metrics(s: dict) -> dict[str, dict]:
    """Flat {metric: {value, ci95}} of an `eval gen` summary (percent, cosine in [-1, 1], length in units)."""
    m = {"BLEU-4": {"value": s["bleu4"]["score"], "ci95": None, "how": f"corpus BLEU, tokenize={s['bleu4']['tokenize']}"}}
    for level, r in s["rouge"].items():
        for k in ("rouge1", "rouge2", "rougeL"):
            m[f"{k.replace('rouge', 'ROUGE-')} ({level})"] = {"value": r[k]["mean"], "ci95": r[k]["ci95"],
                                                              "how": f"mean F1, tokens {r['tokenization']}"}
    c = s["embedding_cosine"]
    if "mean" in c:
        m["embedding cosine"] = {"value": c["mean"], "ci95": c["ci95"], "how": Path(c["model"]).parent.name}
    if "f1" in s["bertscore"]:
        m["BERTScore F1"] = {"value": s["bertscore"]["f1"], "ci95": None, "how": "no rescaling"}
    d = s["distinct"]
    m["distinct-2"] = {"value": d["distinct2"], "ci95": None, "how": f"{d['unit']}s"}
    ln = s["length"]
    m["length (mean)"] = {"value": ln["reply"].get("mean"), "ci95": None, "how": ln["unit"]}
    q = s["length_quality"]
    m["seed 002 'quality'"] = {"value": 100 * q["share_at_least"], "ci95": None,
                               "how": f"LENGTH ONLY: % of replies >= {q['threshold']} {q['unit']}"}
    return m


def _paired(a: list[dict], b: list[dict], key: str) -> dict | None:
    """Mean of the per-reply differences tuned − base with its 95% t interval (same contexts, paired)."""
    from psyassist.eval.metrics import mean_ci

    tb = {r["id"]: r.get(key) for r in b}
    diffs = [tb[r["id"]] - r[key] for r in a if r.get(key) is not None and tb.get(r["id"]) is not None]
    return mean_ci(diffs) if diffs else None


def combine_gen(a: dict, b: dict) -> dict:
    ma, mb = _gen_metrics(a["summary"]), _gen_metrics(b["summary"])
    lang = a["summary"]["lang"]
    per_key = {"embedding cosine": "cosine", "length (mean)": "reply_len", "BERTScore F1": "bertscore_f1"}
    for level in a["summary"]["rouge"]:
        for k in ("rouge1", "rouge2", "rougeL"):
            per_key[f"{k.replace('rouge', 'ROUGE-')} ({level})"] = f"{k}_{level}"
    rows = []
    for name, x in ma.items():
        y = mb.get(name)
        if y is None:
            continue
        row = {"metric": name, "how": x["how"], "base": x["value"], "base_ci95": x["ci95"], "tuned": y["value"],
               "tuned_ci95": y["ci95"], "delta": None if x["value"] is None or y["value"] is None
               else y["value"] - x["value"], "paired": None}
        if name in per_key:
            p = _paired(a["per_item"], b["per_item"], per_key[name])
            # per-item ROUGE is 0-1 in scores.jsonl, 0-100 in the summary
            scale = 100 if name.startswith("ROUGE") else 1
            if p and p["ci95"]:
                row["paired"] = {"n": p["n"], "mean": p["mean"] * scale, "ci95": [v * scale for v in p["ci95"]]}
        rows.append(row)
    files = {relpath(f): _sha256(f) for f in a["data"].get("files", [])}
    return {"data": [relpath(f) for f in a["config"]["data"]], "files": files, "lang": lang, "n": a["summary"]["n"],
            "turns": a["config"]["turns"], "sampling": a["generation"].get("sampling"),
            "finish": {"base": a["summary"]["finish"], "tuned": b["summary"]["finish"]},
            "empty_replies": {"base": a["summary"]["empty_replies"], "tuned": b["summary"]["empty_replies"]},
            "commands": {"base": a["command"], "tuned": b["command"]}, "rows": rows,
            "chart": _chart_metrics(lang, rows)}


def _chart_metrics(lang: str, rows: list[dict]) -> list[str]:
    level = "char" if lang == "zh" else "word"
    want = ["BLEU-4", f"ROUGE-L ({level})", "embedding cosine", "BERTScore F1", "distinct-2", "length (mean)"]
    have = {r["metric"] for r in rows}
    return [m for m in want if m in have]


IMHI_KEYS = ("weighted_f1", "accuracy", "unparsed_rate", "bleu4", "rougeL", "embedding_cosine", "bertscore_f1")


def combine_imhi(a: dict, b: dict) -> dict:
    """Per dataset and macro: both sides' label and explanation metrics, McNemar on label correctness by post id."""
    from psyassist.eval.stats import mcnemar

    def paired(ids_a: dict, ids_b: dict) -> dict:
        common = [i for i in ids_a if i in ids_b]
        n10 = sum(1 for i in common if ids_a[i] and not ids_b[i])
        n01 = sum(1 for i in common if ids_b[i] and not ids_a[i])
        return {"n_paired": len(common), "base_only_right": n10, "tuned_only_right": n01, **mcnemar(n10, n01)}

    rows = []
    for name in [*a["datasets"], "macro"]:
        da = a["macro"] if name == "macro" else a["datasets"][name]
        db = b["macro"] if name == "macro" else b["datasets"].get(name)
        if db is None:
            continue
        ca = {r["id"]: r["correct"] for r in a["per_item"] if name == "macro" or r["dataset"] == name}
        cb = {r["id"]: r["correct"] for r in b["per_item"] if name == "macro" or r["dataset"] == name}
        rows.append({"dataset": name, "n": da["n"], "base": {k: da.get(k) for k in IMHI_KEYS},
                     "tuned": {k: db.get(k) for k in IMHI_KEYS}, "mcnemar": paired(ca, cb)})
    files = {relpath(f["file"]): f["sha256"] for f in a["data"]["files"].values()}
    return {"split": a["data"]["split"], "dir": relpath(a["data"]["dir"]), "files": files, "rows": rows,
            "parse_rule": a["parse_rule"], "scale": a["scale"], "sampling": a["generation"].get("sampling"),
            "commands": {"base": a["command"], "tuned": b["command"]}}


NOTES_EXAMPLES = 2  # drafts shown side by side in the report
NOTES_CASE_CHARS = 400  # a case or reference longer than this is cut in the report (results JSON has it whole)


def _notes_rows(res: dict) -> list[dict]:
    """{metric, how, value, ci95, per: {id: value} or None} of one `eval notes` result (percent, cosine, counts)."""
    d, s, items = res["drafts"], res["summary"], res["items"]
    rows = [{"metric": "parse rate (%)", "how": "drafts that gave a JSON object (must be 100)",
             "value": None if d["parse_rate"] is None else 100 * d["parse_rate"], "ci95": None, "per": None},
            {"metric": "repaired drafts", "how": "parsed, but cut off or a section missing", "value": d["repaired"],
             "ci95": None, "per": None},
            {"metric": "cut at max tokens", "how": "finish = length", "value": d["finish"].get("length", 0),
             "ci95": None, "per": None}]
    for key, v in d["items_per_section"].items():
        rows.append({"metric": f"items: {key}", "how": "mean per draft", "value": v["mean"], "ci95": None,
                     "per": {it["id"]: len(it["sections"][key]) for it in items}})
    word = "word" if "word" in s["tokenization"] else next(iter(s["tokenization"]))
    want = [("full", "rouge1", word, ""), ("full", "rouge2", word, ""), ("full", "rougeL", word, ""),
            ("full", "rougeL", "char", ""), ("full", "rouge1", word, "_recall")]
    want += [(p, k, word, r) for p in ("analysis", "advice") for k, r in (("rougeL", ""), ("rouge1", "_recall"))]
    for part, k, level, rec in want:
        got = s[part].get(level, {}).get(k + rec) if s[part]["n"] else None
        if got is None:
            continue
        name = f"{k.replace('rouge', 'ROUGE-')} {'recall' if rec else 'F1'} · {part} ({level})"
        rows.append({"metric": name, "how": f"mean per draft, tokens {s['tokenization'][level]}", "value": got["mean"],
                     "ci95": got["ci95"], "per": {it["id"]: 100 * it["scores"][f"{part}_{k}_{level}{rec}"]
                                                  for it in items if f"{part}_{k}_{level}{rec}" in it["scores"]}})
    for part in PARTS_SCORED:
        c = s[part].get("embedding_cosine")
        if c and c["mean"] is not None:
            rows.append({"metric": f"embedding cosine · {part}", "how": Path(s["embedding_model"]).parent.name,
                         "value": c["mean"], "ci95": c["ci95"],
                         "per": {it["id"]: it["scores"][f"{part}_cosine"] for it in items
                                 if f"{part}_cosine" in it["scores"]}})
    for dim, v in ((res.get("judge") or {}).get("summary", {}).get("dimensions") or {}).items():
        rows.append({"metric": f"judge: {dim}", "how": "1-5, mean over scored drafts", "value": v["mean"],
                     "ci95": v["ci95"], "per": {it["id"]: it["judge"][dim] for it in items if it.get("judge")}})
    return rows


def combine_notes(a: dict, b: dict) -> dict:
    """Both sides' note metrics, the paired mean difference per case where a metric is per draft, and examples."""
    from psyassist.eval.metrics import mean_ci

    rb = {r["metric"]: r for r in _notes_rows(b)}
    rows = []
    for x in _notes_rows(a):
        y = rb.get(x["metric"])
        if y is None:
            continue
        paired = None
        if x["per"] is not None and y["per"] is not None:
            diffs = [y["per"][i] - v for i, v in x["per"].items() if i in y["per"]]
            p = mean_ci(diffs)
            paired = {"n": p["n"], "mean": p["mean"], "ci95": p["ci95"]} if p["ci95"] else None
        rows.append({"metric": x["metric"], "how": x["how"], "base": x["value"], "base_ci95": x["ci95"],
                     "tuned": y["value"], "tuned_ci95": y["ci95"], "paired": paired,
                     "delta": None if x["value"] is None or y["value"] is None else y["value"] - x["value"]})

    def cut(text: str) -> str:
        return text if len(text) <= NOTES_CASE_CHARS else text[:NOTES_CASE_CHARS] + "…"

    tb = {it["id"]: it for it in b["items"]}
    examples = [{"id": x["id"], "case": cut(x["case"]), "reference": cut(x["reference"]["full"]),
                 "base": x["texts"]["full"], "tuned": tb[x["id"]]["texts"]["full"],
                 "finish": {"base": x["finish"], "tuned": tb[x["id"]]["finish"]},
                 "problems": {"base": x["problems"], "tuned": tb[x["id"]]["problems"]}}
                for x in a["items"] if x["id"] in tb][:NOTES_EXAMPLES]
    have = {r["metric"] for r in rows}
    chart = [m for m in ("ROUGE-L F1 · full (word)", "ROUGE-1 recall · full (word)", "ROUGE-1 recall · analysis (word)",
                         "ROUGE-1 recall · advice (word)", "embedding cosine · full") if m in have]
    g = a["generation"]
    return {"data": relpath(a["data"]["dir"]), "files": {relpath(f): h for f, h in a["data"]["files"].items()},
            "n": a["drafts"]["n"], "by_source": a["data"]["used_by_source"], "lang": a["summary"]["lang"],
            "template": a["template"]["name"], "parts": a["template"]["parts"], "sampling": g["sampling"],
            "prompt_format": a["prompt"]["format"], "system": a["prompt"]["system"],
            "embedding_note": a["metrics_how"]["embedding_note"], "rules": a["rules"],
            "judge": {k: a["judge"][k] for k in ("rubric", "judge")} if a.get("judge") else None,
            "drafts": {"base": a["drafts"], "tuned": b["drafts"]}, "commands": {"base": a["command"], "tuned": b["command"]},
            "rows": rows, "chart": chart, "examples": examples}


def combine_replies(a: dict, b: dict) -> dict:
    rows = [{"prompt": x["prompt"], "base": x["reply"], "tuned": y["reply"],
             "finish": {"base": x["finish"], "tuned": y["finish"]},
             "new_tokens": {"base": x["new_tokens"], "tuned": y["new_tokens"]}}
            for x, y in zip(a["replies"], b["replies"], strict=True)]
    return {"sampling": a["sampling"], "system": a["system"], "thinking": a["model"]["thinking"], "rows": rows}


def print_summary(report: dict, out: Path, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"command": report["command"], "out": str(out), "seconds": report["seconds"],
                          "mcq": {s["name"]: s["rows"] for s in report["stages"] if s["type"] == "mcq"}},
                         ensure_ascii=False))
        return
    for s in report["stages"]:
        if s["type"] == "mcq":
            for r in s["rows"]:
                console.print(f"{s['name']} · {r['format']}: base {100 * r['base']['accuracy']:.1f}% → tuned "
                              f"{100 * r['tuned']['accuracy']:.1f}% ({100 * r['delta']:+.1f} pt, McNemar p = "
                              f"{r['p_value']:.3g}{', not significant at 0.05' if r['p_value'] >= ALPHA else ''})",
                              soft_wrap=True)
    console.print(f"report: {out / 'report.html'} and {out / 'report.md'} ({report['seconds']} s)", soft_wrap=True)
