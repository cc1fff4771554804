# PYTHON_ARGCOMPLETE_OK (argcomplete completes `t2t` once `register-python-argcomplete t2t` is in the shell)
"""The `t2t` command. It parses arguments, calls the library, and prints; nothing else.

Errors the user can fix (T2TError) print as one message and exit with status 1; `--debug` shows the
traceback. Usage errors exit with 2 (argparse), an interrupt with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from t2t import checkpoint as ckpt
from t2t.assembly import prepare
from t2t.dataset import cache_clear, cache_entries, cache_root
from t2t.errors import T2TError
from t2t.evaluation import evaluate
from t2t.export import export
from t2t.hookspecs import hookimpl
from t2t.options import DecodeOptions, field_infos
from t2t.pipeline import load
from t2t.plot import plot_attention, plot_curves
from t2t.recipe import SECTIONS, load_recipe
from t2t.registry import KINDS, get_registry
from t2t.scaffold import new_plugin
from t2t.schema import PLUGIN_SECTIONS, key_tables, recipe_schema
from t2t.scoring import score_files
from t2t.serve.settings import ServeSettings
from t2t.trainer import LOG_FORMAT, TIME_FORMAT, train
from t2t.version import __version__

log = logging.getLogger("t2t")


# --------------------------------------------------------------------------- output helpers


class _TqdmHandler(logging.Handler):
    """Log lines that do not break an active progress bar."""

    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stderr)


def _setup_logging(quiet: bool) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, TIME_FORMAT))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    logging.captureWarnings(False)                 # (again: another main() in this process may have taken it)
    logging.captureWarnings(True)                  # Python's warnings get a time like every other line
    warned = logging.getLogger("py.warnings")
    warned.handlers[:], warned.propagate = [handler], False


class ProgressBar:
    """A training-event plugin that draws a tqdm bar (loss, lr, tokens/s, ETA)."""

    def __init__(self):
        self.bar = None

    @hookimpl
    def t2t_run_start(self, run):
        if run.rank == 0:
            self.bar = tqdm(total=run.total_steps, initial=run.step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, disable=None)

    @hookimpl
    def t2t_step_end(self, run, step, logs):
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", lr=f"{logs['lr']:.2e}",
                                 tok_s=f"{logs['tokens_per_s']:.0f}", refresh=False)

    @hookimpl
    def t2t_run_end(self, run, summary):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _registry():
    return get_registry()


def _load_recipe(args):
    return load_recipe(args.recipe, args.overrides)


# --------------------------------------------------------------------------- commands


def cmd_train(args) -> int:
    if ((args.nproc and args.nproc > 1) or (args.nnodes and args.nnodes > 1)) and "WORLD_SIZE" not in os.environ:
        return _relaunch(args)
    recipe = _load_recipe(args)
    summary = _with_progress(lambda: train(recipe, data_dir=args.data_dir, device=args.device, resume=args.resume,
                                           reset=_split(args.reset), overwrite=args.overwrite))
    _print_summary(summary)
    return 130 if summary["status"] == "interrupted" else 0


def _with_progress(fn):
    reg = _registry()
    bar = ProgressBar()
    reg.register(bar, name="progress-bar", package="t2t")
    try:
        return fn()
    finally:
        reg.unregister("progress-bar")


def _relaunch(args) -> int:
    """Run this same command under torchrun: `--nproc` workers on this machine, and with
    `--nnodes` this machine as one of several that meet at `--master` (c10d rendezvous)."""
    argv, skip = [], 0
    for a in sys.argv[1:]:
        if skip:
            skip -= 1
            continue
        name = a.split("=")[0]
        if name in _LAUNCH_FLAGS:
            skip = 0 if "=" in a else 1
            continue
        argv.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.nproc or 1}"]
    if args.nnodes and args.nnodes > 1:
        if not args.master:
            raise T2TError("--nnodes needs --master HOST:PORT (the address every node reaches the first at)")
        run_id = hashlib.sha1(os.path.abspath(args.recipe).encode()).hexdigest()[:12]
        cmd += [f"--nnodes={args.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={args.master}",
                f"--rdzv-id=t2t-{run_id}"]
        if args.node_rank is not None:
            cmd.append(f"--node-rank={args.node_rank}")
    else:
        cmd.append("--standalone")
    return subprocess.call([*cmd, "-m", "t2t.cli", *argv])


_LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--master")


def cmd_prepare(args) -> int:
    recipe = _load_recipe(args)
    summary = prepare(recipe, data_dir=args.data_dir)
    for name, info in summary["splits"].items():
        c = info["counts"]
        print(f"{name}: {c['kept']:,} examples in {info['folder']} ({c['filtered']} filtered, {c['truncated']} "
              f"truncated, {c['empty']} empty; {info['bytes'] / 2**20:,.1f} MiB)")
    print(f"tokenizers: {summary['tokenizers']}")
    return 0


def _print_summary(summary: dict) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    best = summary.get("best")
    best_text = f"; best {summary['metric']} {best:.4g} at step {summary['best_step']}" if best is not None else ""
    print(f"training {summary['status']} after {summary['step']} steps in {summary['time_s']}s{best_text}; "
          f"checkpoints in {summary['run_dir']}/checkpoints")
    if summary["status"] == "interrupted":
        print(f"resume with: t2t train RECIPE --resume  (output_dir {summary['run_dir']})")


def cmd_evaluate(args) -> int:
    recipe = _load_recipe(args) if args.recipe else None
    if args.checkpoint is None and (recipe is None or not args.baseline):
        raise T2TError("evaluate needs --checkpoint RUN, or a recipe with --baseline NAME")
    report = evaluate(args.checkpoint, recipe, split=args.split, data_dir=args.data_dir, device=args.device,
                      out_dir=args.out, limit=args.limit, baselines=args.baseline or (), **_decode_overrides(args))
    _print_report(report)
    return 0


def _print_report(report: dict) -> None:
    speed = f", {report['sentences_per_s']} sentences/s" if "sentences_per_s" in report else ""
    ppl = f", reference perplexity {report['reference_ppl']:.2f}" if "reference_ppl" in report else ""
    print(f"{report['task']} {report['split']}: {report['sentences']} sentences{speed}{ppl}")
    for name, s in report.get("metrics", {}).items():
        print(f"  {name:<12} {s['value']:8.2f}   {s.get('signature', '')}")
        for sub, v in s.get("details", {}).items():
            if isinstance(v, float) and sub != name:
                print(f"    {sub:<10} {v:8.2f}")
    for name, metrics in report.get("baselines", {}).items():
        print(f"  baseline {name}: " + ", ".join(f"{k} {s['value']:.2f}" for k, s in metrics.items()
                                                 if isinstance(s, dict)))
    print(f"report: {report['outputs']['report']} (and .md)")


def cmd_run(args) -> int:
    recipe = _load_recipe(args)
    summary = _with_progress(lambda: train(recipe, data_dir=args.data_dir, device=args.device, resume=args.resume,
                                           overwrite=args.overwrite))
    _print_summary(summary)
    if summary["status"] == "interrupted":
        return 130
    report = evaluate(recipe.output_dir, recipe, split=args.split, data_dir=args.data_dir, device=args.device)
    _print_report(report)
    return 0


def cmd_generate(args) -> int:
    pipe = load(args.checkpoint, device=args.device, data_dir=args.data_dir)
    opts = pipe.decode_options(**_decode_overrides(args))
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    interactive = args.input in (None, "-") and sys.stdin.isatty()
    name = args.input if args.input not in (None, "-") else "standard input"
    source = _open_input(args.input)
    try:
        if interactive:
            print("type a sentence and press Enter (Ctrl-D to quit)", file=sys.stderr)
        chunk = []
        first = True
        for line in _lines(source, interactive, name):
            chunk.append(line)
            if interactive or len(chunk) >= 1000:
                _generate_chunk(pipe, chunk, opts, args, out, first)
                first, chunk = False, []
        if chunk:
            _generate_chunk(pipe, chunk, opts, args, out, first)
    finally:
        if args.output:
            out.close()
        if args.input not in (None, "-"):
            source.close()
    return 0


def _open_input(path: str | None):
    """The binary stream of `--input` (stdin for none or '-'), or one message saying why not."""
    if path in (None, "-"):
        return getattr(sys.stdin, "buffer", sys.stdin)      # a text stream where stdin was replaced
    p = Path(path)
    if p.is_dir():
        raise T2TError(f"--input {path}: is a folder; give a text file, one source a line")
    try:
        return open(p, "rb")
    except FileNotFoundError:
        raise T2TError(f"--input {path}: no such file") from None
    except OSError as e:
        raise T2TError(f"--input {path}: cannot read it ({e.strerror})") from None


def _lines(stream, interactive: bool, name: str):
    """Lines of a binary stream as text (UTF-8), without their line ends; a line that is not
    UTF-8 text is one message naming the file and line."""
    number = 0
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        raw = stream.readline()
        if not raw:
            return
        number += 1
        try:
            line = raw if isinstance(raw, str) else raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise T2TError(f"{name}:{number}: not UTF-8 text (byte {e.start + 1} of the line); --input takes "
                           f"text, one source a line") from None
        if "\x00" in line:
            raise T2TError(f"{name}:{number}: holds a NUL byte, as binary files do; --input takes text, "
                           f"one source a line")
        yield line.rstrip("\r\n")


def _generate_chunk(pipe, lines, opts, args, out, first: bool) -> None:
    need_attn = bool(args.plot_attention) and first
    results = pipe.search(lines, opts, seed=args.seed, need_attention=need_attn)
    for src, hyps in zip(lines, results):
        texts = [pipe.detokenize(h.tokens) for h in hyps]
        if args.format == "jsonl":
            out.write(json.dumps({"source": src, "hypotheses": [pipe.hypothesis_json(h, args.token_logprobs)
                                                                for h in hyps]}, ensure_ascii=False) + "\n")
        elif len(texts) > 1:
            for t, h in zip(texts, hyps):
                out.write(f"{t}\t{h.score:.4f}\n")
            out.write("\n")
        else:
            out.write(texts[0] + "\n")
        out.flush()
    if need_attn:
        hyp = results[0][0]
        tgt_pieces = [pipe.tgt_tok.vocab.tokens[i] for i in hyp.tokens] + ["</s>"]
        src_pieces = pipe.src_tok.tokenize(pipe.src_tok.normalize(lines[0])) if pipe.src_tok else None
        path = plot_attention(hyp.attention, src_pieces, tgt_pieces, args.plot_attention)
        log.info(f"attention of the first sentence drawn to {path}")


def cmd_serve(args) -> int:
    from t2t.serve import serve           # the app needs the serve extra: imported when asked for
    fields = {f: getattr(args, f) for f in ServeSettings.__dataclass_fields__ if getattr(args, f, None) is not None}
    try:
        settings = ServeSettings(**fields)
    except ValueError as e:                       # an option's bound (OptionError)
        raise T2TError(f"--{getattr(e, 'key', '').replace('_', '-')}: {e}") from None
    serve(args.runs, host=args.host, port=args.port, device=args.device or "auto", data_dir=args.data_dir,
          settings=settings, threads=args.threads)
    return 0


def cmd_export(args) -> int:
    out = export(args.run, args.out, format=args.format, quantization=args.quantization, force=args.force)
    print(f"exported {args.run} to {out} ({args.format}{', ' + args.quantization if args.quantization else ''})")
    return 0


def cmd_cache(args) -> int:
    root = Path(args.dir) if args.dir else cache_root()
    if args.action == "clear":
        gone = cache_clear(root, args.names)
        print(f"deleted {len(gone)} entr{'y' if len(gone) == 1 else 'ies'} of {root}")
        return 0
    entries = cache_entries(root)
    for e in entries:
        what = f"{e['split']}: {e['examples']:,} examples" if e.get("split") else e["kind"]
        print(f"{e['name']:<34} {e['bytes'] / 2**20:10,.1f} MiB  used {time.strftime('%Y-%m-%d %H:%M', time.localtime(e['used']))}"
              f"  {what}")
    print(f"{len(entries)} entries, {sum(e['bytes'] for e in entries) / 2**20:,.1f} MiB in {root}")
    return 0


def cmd_schema(args) -> int:
    text = json.dumps(recipe_schema(_registry()), indent=1) + "\n"
    if not args.output:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    ckpt.atomic_write(out, lambda f: f.write(text.encode("utf-8")))
    log.info(f"recipe schema written to {out}; point your editor's YAML language server at it, e.g. a first line "
             f"`# yaml-language-server: $schema={out.resolve()}` in a recipe")
    return 0


def cmd_recipe_keys(args) -> int:
    reg = _registry()
    if args.name and args.section not in PLUGIN_SECTIONS:
        raise T2TError(f"recipe-keys {args.section} {args.name}: only the plugin sections "
                       f"({', '.join(PLUGIN_SECTIONS)}) take a name")
    tables = key_tables(args.section, args.name, reg)
    if not tables:
        kind = PLUGIN_SECTIONS[args.section][0]
        raise T2TError(f"recipe-keys {args.section} {args.name}: no such {KINDS[kind][1]}; installed: "
                       f"{', '.join(reg.names(kind))}")
    for i, (heading, rows) in enumerate(tables):
        widths = [min(max(len(r[c]) for r in rows), 40) for c in range(3)]
        print(("\n" if i else "") + f"{heading}:")
        for key, kind, default, text in rows:
            print(f"  {key:<{widths[0]}}  {kind:<{widths[1]}}  {default:<{widths[2]}}  {text}".rstrip())
    return 0


def cmd_plugins(args) -> int:
    reg = _registry()
    if args.json or args.verbose:
        info = {"plugins": reg.describe(), "failures": [f.__dict__ for f in reg.failures]}
        if args.json:
            print(json.dumps(info, indent=1))
            return 0
        for p in info["plugins"]:
            print(f"{p['plugin']}  ({p['package']} {p['version']})")
            print(f"  hooks: {', '.join(p['hooks'])}")
            for kind, names in p["registered"].items():
                print(f"  {kind}: {', '.join(names)}")
    else:
        for kind in KINDS:
            entries = reg.entries(kind)
            print(f"{kind}:")
            for name in sorted(entries):
                e = entries[name]
                doc = (e.obj.__doc__ or "").strip().splitlines()[0] if e.obj.__doc__ else ""
                print(f"  {name:<16} {e.package:<14} {doc}")
    for f in reg.failures:
        print(f"broken plugin {f.plugin} ({f.package}): {f.message}", file=sys.stderr)
    return 0


def cmd_average(args) -> int:
    paths = [Path(p) for p in args.checkpoints]
    if len(paths) == 1 and paths[0].is_dir():
        found = (ckpt.best_checkpoints(paths[0], args.best) if args.best
                 else ckpt.last_checkpoints(paths[0], args.last))
        if not found:
            raise T2TError(f"{paths[0]}: no {'scored ' if args.best else ''}checkpoints to average")
        paths = found
    elif args.best:
        raise T2TError("--best needs one run directory (its index ranks the checkpoints)")
    averaged = ckpt.average(paths)
    ckpt.save(Path(args.output), averaged)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {args.output}")
    return 0


def cmd_plot(args) -> int:
    out = args.output or str(Path(args.run_dir) / "curves.png")
    print(f"wrote {plot_curves(Path(args.run_dir), Path(out))}")
    return 0


def cmd_new_plugin(args) -> int:
    root = new_plugin(args.name, args.kind, args.dir)
    print(f"created {root}: pip install -e {root} && t2t plugins && python -m pytest {root}/tests")
    return 0


def cmd_score(args) -> int:
    report = score_files(args.hyp, args.ref, _split(args.metrics), hyp2=args.hyp2, bootstrap=args.bootstrap,
                         seed=args.seed)
    print(json.dumps(report, indent=1, ensure_ascii=False) if args.json else report["text"])
    return 0


# --------------------------------------------------------------------------- parsing


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _decode_overrides(args) -> dict:
    """The decoding flags given on the command line (None: the recipe's value)."""
    return {f.name: getattr(args, f.name, None) for f in field_infos(DecodeOptions)}


def _flag_help(f) -> str:
    """An option's help with its bounds, for a flag generated from the options."""
    bounds = [f">= {f.min:g}" if f.min is not None else "", f"<= {f.max:g}" if f.max is not None else ""]
    shown = ", ".join(b for b in bounds if b)
    return f"{f.help}{f' ({shown})' if shown else ''}"


def _add_decode_flags(p: argparse.ArgumentParser) -> None:
    """One flag per `decode:` key, generated from DecodeOptions (types, choices, bounds, help)."""
    g = p.add_argument_group("decoding (override the recipe's decode section)")
    for f in field_infos(DecodeOptions):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=_flag_help(f))
        else:
            g.add_argument(flag, type=f.type, choices=f.choices, default=None, help=_flag_help(f),
                           metavar=None if f.choices else f.name.upper().split("_")[-1])


def _add_common(p: argparse.ArgumentParser, recipe: bool | str = True) -> None:
    if recipe == "optional":
        p.add_argument("recipe", nargs="?", help="recipe YAML (default: the checkpoint's own)")
    elif recipe:
        p.add_argument("recipe", help="recipe YAML")
    if recipe:
        p.add_argument("overrides", nargs="*", metavar="key.path=value", help="recipe overrides, e.g. train.lr=1e-3")
    p.add_argument("--data-dir", default=None, help="base folder for data.dir (default: $T2T_DATA)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t2t", description="plugin-based text-to-text framework")
    parser.add_argument("--version", action="version", version=f"t2t {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _training_commands(sub)
    _decoding_commands(sub)
    _tool_commands(sub)
    return parser


def _training_commands(sub) -> None:
    p = sub.add_parser("train", help="train a recipe")
    _add_common(p)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--reset", help="with --resume: comma list of optimizer,scheduler,dataloader,meters to start afresh")
    p.add_argument("--overwrite", action="store_true", help="delete the run's checkpoints and start over")
    p.add_argument("--nproc", type=int, help="train with N processes on this machine (torchrun)")
    p.add_argument("--nnodes", type=int, help="train on N machines; run the same command on each")
    p.add_argument("--node-rank", type=int, help="with --nnodes: this machine's place, 0 to N-1")
    p.add_argument("--master", metavar="HOST:PORT", help="with --nnodes: where the machines meet (the first's address)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("prepare", help="tokenize and encode a recipe's training data once, for every run to share")
    _add_common(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("run", help="train a recipe, then evaluate it on the test split")
    _add_common(p)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete the run's checkpoints and start over")
    p.add_argument("--split", default="test", help="the split to evaluate after training (default: test)")
    p.set_defaults(func=cmd_run)


def _decoding_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="decode a split with a checkpoint and score it")
    _add_common(p, recipe="optional")
    p.add_argument("--checkpoint", nargs="+", action="extend", metavar="RUN",
                   help="run directory or checkpoint file; several: decode with their ensemble")
    p.add_argument("--split", default="test", help="the split to decode and score (default: test)")
    p.add_argument("--baseline", action="append", help="also score a model-free baseline of the task (e.g. lead)")
    p.add_argument("--out", help="folder for hypotheses and the report (default: RUN/eval)")
    p.add_argument("--limit", type=int, help="only the first N examples")
    _add_decode_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("generate", help="decode sentences from a file or stdin")
    _add_common(p, recipe=False)
    p.add_argument("--checkpoint", nargs="+", action="extend", metavar="RUN", required=True,
                   help="run directory or checkpoint file; several: decode with their ensemble")
    p.add_argument("--input", help="input file, one source a line (default: stdin)")
    p.add_argument("--output", help="output file (default: stdout)")
    p.add_argument("--format", choices=("plain", "jsonl"), default="plain",
                   help="plain: the best hypothesis a line; jsonl: an object a line with the n-best and scores")
    p.add_argument("--token-logprobs", action="store_true", help="jsonl: include per-token log-probabilities")
    p.add_argument("--seed", type=int, help="sampling seed (default: the recipe's)")
    p.add_argument("--plot-attention", metavar="OUT.png", help="draw the first sentence's attention")
    _add_decode_flags(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("serve", help="serve trained models over HTTP (API, dynamic batching, a page at /)")
    p.add_argument("runs", nargs="+", metavar="[NAME=]RUN", help="run directories or checkpoints (named after "
                   "their folder unless NAME= is given)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    p.add_argument("--data-dir", default=None, help="base folder for data.dir (default: $T2T_DATA)")
    p.add_argument("--threads", type=int, help="CPU threads for decoding")
    for f in field_infos(ServeSettings):          # the server's limits, with their bounds and defaults
        p.add_argument("--" + f.name.replace("_", "-"), type=f.type, choices=f.choices, default=None,
                       help=_flag_help(f) + (f"; default {f.default}" if f.default is not None else ""))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a Transformer run to CTranslate2, or a fine-tuned pretrained model "
                       "back to its folder format")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("out", help="folder to write (must not exist unless --force)")
    p.add_argument("--format", default="ctranslate2", choices=("ctranslate2", "hf"),
                   help="ctranslate2: a CTranslate2 model; hf: a run that started from a pretrained folder, "
                   "written back in its format (config, tokenizer files, model.safetensors)")
    p.add_argument("--quantization", help="weight type of the exported model: int8, int8_float32, int16, "
                   "float16, bfloat16, float32 (default: the weights as trained, float32)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_export)


def _tool_commands(sub) -> None:
    p = sub.add_parser("cache", help="list or clear the prepared data and tokenizers runs share "
                       "($T2T_CACHE/prepared or ~/.cache/t2t/prepared)")
    p.add_argument("action", nargs="?", default="list", choices=("list", "clear"), help="list (default) or clear")
    p.add_argument("names", nargs="*", help="with clear: the entries to delete (default: all)")
    p.add_argument("--dir", help="another prepared-data folder (a recipe's data.prepared_dir)")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("schema", help="write the JSON Schema of recipes (every key, type, bound, default and help, "
                       "the installed plugins' included) for an editor to check recipes as they are typed")
    p.add_argument("--output", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("recipe-keys", help="print every recipe key with its type, bounds, default and help")
    p.add_argument("section", nargs="?", choices=SECTIONS, help="only this section (default: all)")
    p.add_argument("name", nargs="?", help="with data, tokenizer, model, metrics or loggers: only this task, "
                   "tokenizer name, architecture, metric or logger")
    p.set_defaults(func=cmd_recipe_keys)

    p = sub.add_parser("plugins", help="list installed tasks, tokenizers, metrics, models and loggers")
    p.add_argument("--verbose", action="store_true", help="per plugin: package, version, hooks, names")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("average", help="average the weights of several checkpoints")
    p.add_argument("checkpoints", nargs="+", help="checkpoint files, or one run directory")
    p.add_argument("--last", type=int, default=5, help="with a run directory: its last N checkpoints")
    p.add_argument("--best", type=int, help="with a run directory: its N best checkpoints by the validation metric")
    p.add_argument("--output", required=True, help="the averaged checkpoint file to write")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("plot", help="draw a run's loss and metric curves to PNG")
    p.add_argument("run_dir", help="run directory (its log.jsonl)")
    p.add_argument("--output", help="PNG path (default: RUN/curves.png)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("new-plugin", help="scaffold an installable plugin package with a test and a recipe")
    p.add_argument("name", help="plugin name (lower case, e.g. headlines)")
    p.add_argument("--kind", default="task", choices=("task", "tokenizer", "metric", "model"),
                   help="what the plugin registers (default: task)")
    p.add_argument("--dir", default=".", help="folder to create the package in")
    p.set_defaults(func=cmd_new_plugin)

    p = sub.add_parser("score", help="score hypothesis files against references")
    p.add_argument("--metrics", default="bleu,chrf", help="comma list of metric names")
    p.add_argument("--hyp", required=True, help="hypothesis file, one a line")
    p.add_argument("--ref", required=True, action="append", help="reference file (repeat for more references)")
    p.add_argument("--hyp2", help="a second system: paired bootstrap significance against --hyp")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=12345, help="bootstrap seed (default: 12345)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=cmd_score)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:               # the shell asks for completions (t2t[completion])
        with contextlib.suppress(ImportError):
            import argcomplete
            argcomplete.autocomplete(parser, exit_method=sys.exit)
    # overrides may come after options (`t2t train r.yaml --data-dir d train.lr=1e-3`)
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    quiet = args.quiet or int(os.environ.get("RANK", "0")) != 0
    _setup_logging(quiet)
    try:
        return args.func(args)
    except T2TError as e:
        if args.debug:
            raise
        print(f"{time.strftime(TIME_FORMAT)} t2t: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{time.strftime(TIME_FORMAT)} t2t: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                      # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
