"""`vle-kit run | check | plugins`: the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vle_kit.errors import RecipeError, VleKitError


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
    return top


def cmd_run(args) -> int:
    from vle_kit.recipe import load_recipe
    from vle_kit.runs import RunDir
    from vle_kit.train import train

    if (args.recipe is None) == (args.resume is None):
        raise VleKitError("give a recipe to start a run, or --resume RUN_DIR, not both")
    if args.resume:
        run = RunDir.existing(args.resume)
        recipe, registry = load_recipe(run.recipe, args.overrides, args.plugins)
    else:
        recipe, registry = load_recipe(args.recipe, args.overrides, args.plugins)
        run = RunDir.create(args.runs, recipe.recipe.name)
    print(f"run directory: {run.path}", flush=True)
    result = train(recipe, registry, run, resume=args.resume is not None,
                   allow_changes=args.allow_changes)
    rows = zip(result["tokens"], result["vle"]["mse"], result["vle"]["psnr"], result["pca"]["mse"])
    print("tokens  test MSE  PSNR dB  PCA MSE")
    for k, mse, db, pca in rows:
        print(f"{k:>6}  {mse:8.5f}  {db:7.2f}  {pca:7.5f}")
    written = [run.eval_json, run.curve_png, run.grid_png, run.masks_png]
    print(f"wrote {', '.join(str(p) for p in written if p.exists())}")
    return 0


def cmd_check(args) -> int:
    from vle_kit.recipe import load_recipe

    recipe, _ = load_recipe(args.recipe, args.overrides, args.plugins)
    print(f"{args.recipe}: ok ({recipe.recipe.name}: composer {recipe.model.composer.use}, "
          f"memory {recipe.model.memory.use}, saliency {recipe.model.saliency.use}, "
          f"combiner {recipe.model.combiner.use}, data {recipe.data.use})")
    return 0


def cmd_plugins(args) -> int:
    from vle_kit.plugins import load_module, load_registry

    registry = load_registry([load_module(p) for p in args.plugins])
    for info in registry.plugins:
        provides = "; ".join(f"{slot}: {', '.join(names)}" for slot, names in
                             info.provides.items()) or "nothing"
        print(f"{info.name} {info.version}\n    {provides}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins}[args.command]
    try:
        return command(args)
    except RecipeError as e:
        print(f"error: {e.source}: {len(e.problems)} problem(s)", file=sys.stderr)
        for problem in e.problems:
            print(f"{e.source}: {problem}", file=sys.stderr)
        return 2
    except VleKitError as e:
        from vle_kit.train import Interrupted

        print(f"{'stopped' if isinstance(e, Interrupted) else 'error'}: {e}", file=sys.stderr)
        return 130 if isinstance(e, Interrupted) else 1


if __name__ == "__main__":
    sys.exit(main())
