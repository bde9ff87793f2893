"""`vle-kit run | check | plugins | eval | compare | encode | decode`: the command line."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from vle_kit.errors import Interrupted, RecipeError, VleKitError


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("-p", "--plugin", dest="plugins", action="append", default=[],
                   metavar="MODULE", help="load a plug-in module or .py file (repeatable)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vle-kit", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a recipe, then evaluate it")
    run.add_argument("recipe", nargs="?", type=Path, help="the recipe (TOML)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run")
    run.add_argument("--allow-changes", action="store_true",
                     help="let --resume take --set changes of steps, lr and logging keys")
    run.add_argument("--runs", type=Path, default=Path("runs"), help="where runs go (runs/)")
    _recipe_args(run)
    check = sub.add_parser("check", help="validate a recipe without training")
    check.add_argument("recipe", type=Path)
    _recipe_args(check)
    plugins = sub.add_parser("plugins", help="list plug-ins and the names they provide")
    plugins.add_argument("-p", "--plugin", dest="plugins", action="append", default=[],
                         metavar="MODULE")
    evaluate = sub.add_parser("eval", help="re-evaluate a trained run, on any data set")
    evaluate.add_argument("run", type=Path, metavar="RUN_DIR")
    evaluate.add_argument("--data", metavar="NAME",
                          help="evaluate on this data set (its defaults at the run's image "
                               "size; change them with --set data.KEY=VALUE)")
    evaluate.add_argument("-o", "--out", type=Path, metavar="DIR",
                          help="where eval.json and report.html go (the run directory, or "
                               "RUN_DIR/eval_NAME with --data)")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"))
    evaluate.add_argument("--max-error", type=float, nargs="+", default=[], metavar="E",
                          help="add the adaptive-length figures at these MSE thresholds")
    _recipe_args(evaluate)
    comp = sub.add_parser("compare", help="one chart and table of several runs' curves")
    comp.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    comp.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    enc = sub.add_parser("encode", help="save the tokens of images (safetensors)")
    enc.add_argument("run", type=Path, metavar="RUN_DIR")
    enc.add_argument("images", type=Path, nargs="+", help="image files or folders")
    enc.add_argument("--tokens", type=int, metavar="K",
                     help="tokens per image, or at most this many with --max-error (tokens.max)")
    enc.add_argument("--max-error", type=float, metavar="E",
                     help="stop each image at the first token after which its MSE is <= E")
    enc.add_argument("--min-mask", type=float, metavar="A",
                     help="mask models: stop each image before a token whose mask covers less "
                          "than this share of the image")
    enc.add_argument("-o", "--out", type=Path, required=True, metavar="FILE.safetensors")
    enc.add_argument("--recons", action="store_true",
                     help="save the reconstruction after each token too")
    enc.add_argument("--device", choices=("auto", "cpu", "cuda"))
    dec = sub.add_parser("decode", help="turn saved tokens (any prefix) back into images")
    dec.add_argument("tokens_file", type=Path, metavar="FILE.safetensors")
    dec.add_argument("-o", "--out", type=Path, required=True, metavar="DIR")
    dec.add_argument("--tokens", type=int, metavar="J", help="decode the first J (all)")
    dec.add_argument("--run", type=Path, metavar="RUN_DIR",
                     help="the run whose decoder to use (the one that encoded them)")
    dec.add_argument("--device", choices=("auto", "cpu", "cuda"))
    return top


def cmd_run(args) -> int:
    from vle_kit import distributed
    from vle_kit.build import checked_size, select_device
    from vle_kit.recipe import load_recipe, warnings
    from vle_kit.report import curve_table, markdown
    from vle_kit.runs import RunDir
    from vle_kit.train import train

    started = time.perf_counter()
    if (args.recipe is None) == (args.resume is None):
        raise VleKitError("give a recipe to start a run, or --resume RUN_DIR, not both")
    if args.resume:
        run = RunDir.existing(args.resume)
        recipe, registry = load_recipe(run.recipe, args.overrides, args.plugins)
    else:
        recipe, registry = load_recipe(args.recipe, args.overrides, args.plugins)
    checked_size(recipe, registry, str(args.recipe or run.recipe))
    if os.environ.get("RANK", "0") == "0":
        for line in warnings(recipe, registry):
            print(f"warning: {line}", file=sys.stderr)
    distributed.start(select_device(recipe.train.device))  # under torchrun: join the job
    try:
        if not args.resume:  # rank 0 names the run directory; every rank uses it
            run = RunDir(distributed.broadcast(RunDir.create(args.runs, recipe.recipe.name).path
                                               if distributed.is_main() else None))
        if distributed.is_main():
            print(f"run directory: {run.path}" + (f" ({distributed.world()} ranks)"
                                                  if distributed.active() else ""), flush=True)
        result = train(recipe, registry, run, resume=args.resume is not None,
                       allow_changes=args.allow_changes)
    finally:
        distributed.stop()
    if result is None:
        return 0
    print(markdown([curve_table(result)]))
    written = [run.eval_json, run.curve_png, run.grid_png, run.masks_png, run.similarity_png,
               run.probe_png, run.training_png]
    print(f"wrote {', '.join(str(p) for p in written if p.exists())}\n")
    print(closing_lines(run, result, time.perf_counter() - started))
    return 0


def closing_lines(run, result, seconds: float) -> str:
    """Where the run is, how long it took, the numbers a person wants, where the report is."""
    from vle_kit.runs import RunInfo

    info = RunInfo.read(run)
    training = f": training {info.train_seconds / 60:.1f} min" if info else ""
    k = result.tokens[-1]
    numbers = (f"MSE after 1 token {result.vle.mse[0]:.4f} (PCA {result.pca.mse[0]:.4f}), after "
               f"{k} {result.vle.mse[-1]:.4f} (PCA {result.pca.mse[-1]:.4f})")
    if result.masks is not None and result.masks.fg_ari is not None:
        numbers += f"; FG-ARI {result.masks.fg_ari:.3f}"
    return (f"run {run.path} took {seconds / 60:.1f} min{training}\n{numbers}\n"
            f"report: {run.report_html}")


def cmd_check(args) -> int:
    from vle_kit.build import checked_size
    from vle_kit.recipe import load_recipe, warnings
    from vle_kit.slots import MODEL_SLOTS

    recipe, registry = load_recipe(args.recipe, args.overrides, args.plugins)
    size = checked_size(recipe, registry, str(args.recipe))
    for line in warnings(recipe, registry):
        print(f"warning: {args.recipe}: {line}", file=sys.stderr)
    parts = ", ".join(f"{s.name} {getattr(recipe.model, s.name).use}" for s in MODEL_SLOTS)
    print(f"{args.recipe}: ok ({recipe.recipe.name}: {parts}, data {recipe.data.use})")
    print(f"model: {size.describe(recipe)}")
    return 0


def cmd_plugins(args) -> int:
    from vle_kit.plugins import load_module, load_registry

    registry = load_registry([load_module(p) for p in args.plugins])
    for info in registry.plugins:
        provides = "; ".join(f"{slot}: {', '.join(names)}" for slot, names in
                             info.provides.items()) or "nothing"
        print(f"{info.name} {info.version}\n    {provides}")
    return 0


def cmd_eval(args) -> int:
    from vle_kit.build import load_data, load_run
    from vle_kit.evaluate import write_evaluation
    from vle_kit.report import adaptive_blocks, curve_table, markdown, separation_blocks
    from vle_kit.runs import RunDir

    for e in args.max_error:
        threshold(e, "--max-error")
    overrides = args.overrides + ([f"eval.max_error={list(args.max_error)}"]
                                  if args.max_error else [])
    trained = load_run(args.run, overrides, args.plugins, args.data, args.device)
    recipe, channels = trained.recipe, trained.model.image_shape[0]
    train_set, test_set = (s.with_channels(channels) for s in load_data(recipe, trained.registry))
    out = RunDir(args.out or (trained.run.path if args.data is None
                              else trained.run.path / f"eval_{args.data}"))
    title = recipe.recipe.name if args.data is None else f"{recipe.recipe.name} on {args.data}"
    result = write_evaluation(trained.model, recipe, train_set, test_set, trained.device, out,
                              title, trained=trained.run)
    print(markdown([f"{title}: {len(test_set)} test images", curve_table(result),
                    *separation_blocks(result), *adaptive_blocks(result)]))
    print(f"wrote {out.eval_json} and {out.report_html}")
    return 0


def cmd_compare(args) -> int:
    from vle_kit.report import compare
    from vle_kit.results import Evaluation

    results = {}
    for run in args.runs:
        path = run / "eval.json"
        if not path.is_file():
            raise VleKitError(f"{run}: no eval.json (train it, or run `vle-kit eval {run}`)")
        result = Evaluation.read(path)
        name = result.recipe or run.name
        results[name if name not in results else run.name] = result
    print(compare(results, args.out))
    print(f"wrote {args.out / 'compare.png'} and {args.out / 'compare.md'}")
    return 0


def threshold(value: float | None, flag: str, top: float = math.inf) -> float | None:
    """A stopping threshold from the command line: finite, in [0, top]; a one-line error."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= top):
        raise VleKitError(f"{flag}: must be a finite number from 0"
                          + (f" to {top:g}" if math.isfinite(top) else "") + f", got {value}")
    return value


def cmd_encode(args) -> int:
    from vle_kit.build import load_run
    from vle_kit.evaluate import decode_images, encode_images
    from vle_kit.images import image_files, read_images
    from vle_kit.tokenfile import save_tokens

    max_error = threshold(args.max_error, "--max-error")
    min_mask = threshold(args.min_mask, "--min-mask", 1.0)
    trained = load_run(args.run, device=args.device)
    model = trained.model
    if min_mask is not None and not model.saliency.makes_masks:
        raise VleKitError(f"--min-mask: the model of {args.run} makes no masks")
    k = trained.recipe.tokens.max if args.tokens is None else args.tokens
    if k < 1:
        raise VleKitError(f"--tokens: must be at least 1, got {k}")
    files = [f for p in args.images for f in (image_files(p) if p.is_dir() else [p])]
    if not files:
        raise VleKitError(f"no image files in {', '.join(map(str, args.images))}")
    channels, size = model.image_shape[:2]
    encoded = encode_images(model, read_images(files, size, channels), k, trained.device,
                            max_error, min_mask)
    saved = {"tokens": encoded.tokens, "lengths": encoded.lengths,
             "masks": None if model.saliency.from_tokens else encoded.masks}
    if args.recons:  # after each token, zero past each image's length
        saved["recons"] = decode_images(model, encoded.tokens, encoded.lengths, k,
                                        encoded.masks, trained.device, every=True)
    save_tokens(args.out, {n: v for n, v in saved.items() if v is not None},
                run=trained.run.path, k=k, images=[str(f) for f in files],
                max_error=max_error, min_mask=min_mask)
    lengths = encoded.lengths.float()
    print(f"wrote {args.out}: {len(files)} images, {lengths.mean():.2f} tokens each on "
          f"average ({int(lengths.min())} to {int(lengths.max())}, at most {k}) of "
          f"{tuple(encoded.tokens.shape[2:])}")
    return 0


def cmd_decode(args) -> int:
    from collections import Counter

    from vle_kit.build import load_run
    from vle_kit.evaluate import decode_images
    from vle_kit.images import write_image
    from vle_kit.tokenfile import load_tokens

    tensors, meta = load_tokens(args.tokens_file)
    trained = load_run(args.run or meta["run"], device=args.device)
    lengths, saved = tensors["lengths"], int(tensors["lengths"].max())
    j = saved if args.tokens is None else args.tokens
    if not 1 <= j <= saved:
        raise VleKitError(f"--tokens: the file holds {saved} tokens per image at most, got {j}")
    masks = tensors.get("masks")
    recons = decode_images(trained.model, tensors["tokens"][:, :j], lengths.clamp(max=j),
                           meta["k"], None if masks is None else masks[:, :j], trained.device)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [Path(p).stem for p in meta["images"]]
    repeated = {n for n, count in Counter(names).items() if count > 1}
    for i, recon in enumerate(recons):
        stem = f"{i:05d}_{names[i]}" if names[i] in repeated else names[i]
        write_image(recon, args.out / f"{stem}.png")
    used = "its own length" if args.tokens is None else f"at most {j} tokens"
    print(f"wrote {len(names)} images, each decoded from {used}, to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins, "eval": cmd_eval,
               "compare": cmd_compare, "encode": cmd_encode, "decode": cmd_decode}[args.command]
    try:
        return command(args)
    except RecipeError as e:
        print(f"error: {e.source}: {len(e.problems)} problem(s)", file=sys.stderr)
        for problem in e.problems:
            print(f"{e.source}: {problem}", file=sys.stderr)
        return 2
    except VleKitError as e:
        if not isinstance(e, Interrupted):
            print(f"error: {e}", file=sys.stderr)
            return 1
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops alike
            print(f"stopped: {e}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left early (`vle-kit check ... | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush passes
        return 1


if __name__ == "__main__":
    sys.exit(main())
