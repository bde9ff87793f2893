"""Figures and pages from eval.json: the per-token curve, the token similarity matrix, the
probe curves, one self-contained report.html per run, and the comparison of several runs."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import attrs
from matplotlib.figure import Figure
from torch import Tensor  # the object API: no GUI backend, nothing left open

from vle_kit.errors import VleKitError
from vle_kit.host import describe
from vle_kit.results import Evaluation, MaskScores
from vle_kit.runs import RunInfo


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _mse_axes(fig: Figure, title: str):
    ax = fig.subplots()
    ax.set_yscale("log")
    ax.set_xlabel("tokens k")
    ax.set_ylabel("test MSE ([-1, 1] scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return ax


def write_curve_plot(result: Evaluation, title: str, path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = _mse_axes(fig, title)
    k = result.tokens
    ax.plot(k, result.vle.mse, "o-", label="VLE, first k of K tokens")
    ax.plot(k, result.vle_asked_k.mse, "s--", label="VLE, asked for k tokens")
    ax.plot(k, result.pca.mse, "^:", label="PCA, same number of floats")
    if result.pca_augmented is not None:
        ax.plot(k, result.pca_augmented.mse, "v:", label="PCA of the augmented training images")
    ax.set_xticks(k)
    ax.legend()
    _save(fig, path)


def write_similarity_plot(result: Evaluation, title: str, path: Path) -> None:
    similarity = result.separation["similarity"]
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    shown = ax.imshow(similarity["matrix"], vmin=-1, vmax=1, cmap="coolwarm")
    k = len(similarity["matrix"])
    ax.set_xticks(range(k), range(1, k + 1))
    ax.set_yticks(range(k), range(1, k + 1))
    ax.set_xlabel("token")
    ax.set_ylabel("token")
    ax.set_title(f"{title}: cosine similarity\nmean off-diagonal "
                 f"{similarity['mean_off_diagonal']:.3f}")
    fig.colorbar(shown, ax=ax)
    _save(fig, path)


def write_adaptive_plot(result: Evaluation, title: str, path: Path) -> bool:
    """Mean MSE against mean tokens used: each image stopped at the threshold, beside every
    image cut to the same length; False without adaptive figures."""
    adaptive = result.adaptive
    if adaptive is None:
        return False
    fig = Figure(figsize=(6, 4))
    ax = _mse_axes(fig, f"{title}: adaptive length")
    ax.set_xlabel("mean tokens per image")
    points = sorted(adaptive.points, key=lambda p: p.mean_tokens)
    ax.plot([p.mean_tokens for p in points], [p.mse for p in points], "o-",
            label="each image stops at its threshold")
    ax.plot(result.tokens, result.vle.mse, "s--", label="every image cut to k tokens")
    ax.legend()
    _save(fig, path)
    return True


def adaptive_blocks(result: Evaluation) -> list[Block]:
    """The savings and the coverage curve of one result."""
    adaptive = result.adaptive
    if adaptive is None:
        return []
    k_max = result.tokens[-1]
    blocks: list[Block] = [
        "Each image stops at the first token after which its MSE is at most the threshold (or "
        f"at K = {k_max}). Threshold E_k: the MSE that cutting every image to k tokens brings "
        "95% of the images under.",
        (["k", "E_k", "adaptive mean tokens", "saved"],
         [[str(s.k), f"{s.max_error:.5f}", f"{s.mean_tokens:.2f}", f"{s.saved:.0%}"]
          for s in adaptive.savings]),
        (["threshold", "mean tokens", "share under", "MSE", "SSIM", "fixed MSE, same floats",
          "asked-for-length MSE", "tokens used (1..K)"],
         [[f"{p.max_error:.5f}", f"{p.mean_tokens:.2f}", f"{p.share_met:.1%}", f"{p.mse:.5f}",
           f"{p.ssim:.3f}", f"{p.fixed_mse:.5f}", f"{p.asked_mse:.5f}",
           " ".join(map(str, p.tokens))] for p in adaptive.points]),
        f"Rank correlation (Spearman) of tokens used at E_{min(4, k_max)} with "
        f"{adaptive.complexity}: {adaptive.spearman:.2f}."]
    if adaptive.mask_rule is not None:
        rule = adaptive.mask_rule
        blocks.append(f"Empty-mask rule (stop before a mask under {rule['min_mask']:.1%} of the "
                      f"image): mean {rule['mean_tokens']:.2f} tokens, MSE {rule['mse']:.5f}, "
                      f"rank correlation with {adaptive.complexity} {rule['spearman']:.2f}.")
    return blocks


def write_lengths_plot(inputs: Tensor, recons: Tensor, lengths: Tensor, title: str,
                       path: Path) -> None:
    """Images sorted by the tokens they got: one row per image, the input beside its
    reconstruction at its own length. inputs, recons (N, C, H, W) in [0, 1]."""
    order = lengths.argsort(stable=True)
    fig = Figure(figsize=(3.2, 1.5 * len(order)))
    axes = fig.subplots(len(order), 2, squeeze=False)
    for row, i in zip(axes, order.tolist()):
        for ax, image in zip(row, (inputs[i], recons[i])):
            shown = image.permute(1, 2, 0).clamp(0, 1).numpy()
            ax.imshow(shown[..., 0] if shown.shape[2] == 1 else shown, cmap="gray",
                      interpolation="nearest", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(f"{int(lengths[i])} tokens", rotation=0, ha="right", va="center")
    axes[0][0].set_title("input")
    axes[0][1].set_title("reconstruction")
    fig.suptitle(title)
    _save(fig, path)


def write_probe_plot(result: Evaluation, title: str, path: Path) -> bool:
    """Probe accuracy from the first k tokens vs PCA, per image label; False if none."""
    labels = result.separation.get("images", {})
    if not labels:
        return False
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, probe in labels.items():
        ax.plot(result.tokens, probe["probe_tokens"], "o-", label=f"{name}: first k tokens")
        ax.plot(result.tokens, probe["probe_pca"], "^:", label=f"{name}: PCA, same floats")
    ax.set_xlabel("tokens k")
    ax.set_ylabel("linear probe test accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)
    return True


Table = tuple[list[str], list[list[str]]]  # header, rows
Block = str | Table  # a paragraph or a table


def markdown(blocks: list[Block]) -> str:
    """Paragraphs and tables as Markdown, a blank line between blocks."""
    def table(header: list[str], rows: list[list[str]]) -> str:
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)

    return "\n\n".join(b if isinstance(b, str) else table(*b) for b in blocks)


def html_blocks(blocks: list[Block]) -> str:
    """The same blocks as HTML paragraphs and tables."""
    def table(header: list[str], rows: list[list[str]]) -> str:
        def cells(tag: str, row: list[str]) -> str:
            return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row) + "</tr>"

        return "<table>" + cells("th", header) + "".join(cells("td", r) for r in rows) + \
            "</table>"

    return "\n".join(f"<p>{html.escape(b)}</p>" if isinstance(b, str) else table(*b)
                     for b in blocks)


def curve_table(result: Evaluation) -> Table:
    """Every per-token number of one result."""
    vle, asked, pca, augmented = (result.vle, result.vle_asked_k, result.pca,
                                  result.pca_augmented)
    return (["k", "floats", "MSE", "PSNR dB", "SSIM", "improved", "asked-k MSE", "PCA MSE",
             "PCA SSIM"] + (["PCA MSE, augmented training images"] if augmented else []),
            [[str(k), str(result.floats[i]), f"{vle.mse[i]:.5f}", f"{vle.psnr[i]:.2f}",
              f"{vle.ssim[i]:.3f}", f"{vle.improved[i]:.1%}", f"{asked.mse[i]:.5f}",
              f"{pca.mse[i]:.5f}", f"{pca.ssim[i]:.3f}"]
             + ([f"{augmented.mse[i]:.5f}"] if augmented else [])
             for i, k in enumerate(result.tokens)])


def separation_blocks(result: Evaluation) -> list[Block]:
    """The separation numbers of one result."""
    sep = result.separation
    blocks: list[Block] = [f"Mean off-diagonal cosine similarity of an image's tokens: "
                           f"{sep['similarity']['mean_off_diagonal']:.3f}"]
    objects = sep.get("objects", {})
    labelled = {n: v for n, v in objects.items() if isinstance(v, dict)}
    if objects:
        blocks.append(f"Tokens that claim an object: {objects['tokens_on_objects']:.1%} "
                      f"({objects['tokens']} tokens).")
    if labelled:
        blocks.append((["object label", "tokens NMI", "PCA NMI", "tokens probe", "PCA probe"],
                       [[n, f"{v['tokens']['nmi']:.3f}", f"{v['pca']['nmi']:.3f}",
                         f"{v['tokens']['probe']:.3f}", f"{v['pca']['probe']:.3f}"]
                        for n, v in labelled.items()]))
    for name, v in sep.get("images", {}).items():
        blocks += [([f"{name}: k", *map(str, result.tokens)],
                    [["tokens probe", *(f"{a:.3f}" for a in v["probe_tokens"])],
                     ["PCA probe", *(f"{a:.3f}" for a in v["probe_pca"])]]),
                   f"k-means NMI, all tokens: {v['nmi_tokens']:.3f}; PCA: {v['nmi_pca']:.3f}"]
    return blocks


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


STYLE = """body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:right}pre{background:#f4f4f4;padding:1em;overflow:auto}
img{image-rendering:pixelated;max-width:100%}figure{display:inline-block;margin:1em}
.verdict{font-size:1.2em;font-weight:bold}"""


def write_training_plot(metrics: Path, title: str, path: Path) -> bool:
    """The training loss and the checkpoints' test MSE against step, from metrics.jsonl;
    False if there is nothing to plot."""
    try:
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return False
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    scores = [(r["step"], r["test_mse"]) for r in rows if "test_mse" in r]
    if not losses and not scores:
        return False
    fig = Figure(figsize=(9, 3.5))
    left, right = fig.subplots(1, 2)
    if losses:
        left.plot(*zip(*losses), lw=0.8)
    left.set(xlabel="step", ylabel="training loss", title=f"{title}: training loss")
    if scores:
        right.plot(*zip(*scores), "o-")
        right.set_yscale("log")
    right.set(xlabel="step", ylabel="test MSE after K tokens", title="checkpoints")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    _save(fig, path)
    return True


def mask_information(result: Evaluation) -> str:
    """Whether the masks hold information the tokens do not, and the fair comparison if so."""
    if not result.mask_floats:
        return ("The masks follow from the tokens (the decoder makes them): they carry nothing "
                "the tokens do not, and the comparison with PCA counts the tokens' floats only.")
    pca = result.pca_with_masks
    return (f"The masks look at the image, so they carry information no token holds: counted as "
            f"{result.mask_floats} floats a token (one a pixel), PCA with the tokens' and the "
            f"masks' floats reaches MSE {pca.mse[0]:.5f} after 1 token and {pca.mse[-1]:.5f} "
            f"after {result.tokens[-1]} (the VLE: {result.vle.mse[0]:.5f}, "
            f"{result.vle.mse[-1]:.5f}).")


def mask_rows(result: Evaluation) -> list[list[str]]:
    """The masks' scores as table rows, a row per label for label_tells_token."""
    rows = []
    for name, value in attrs.asdict(result.masks).items():
        by_label = value if isinstance(value, dict) else {None: value}
        rows += [[name if label is None else f"{name}: {label}", f"{v:.3f}"]
                 for label, v in by_label.items() if v is not None]
    return rows


def verdict(result: Evaluation) -> str:
    """One line: where the VLE stands against PCA, whether every token helps, and for mask
    models how well the masks split the scenes."""
    ratios = [v / p for v, p in zip(result.vle.mse, result.pca.mse)]
    below = [k for k, r in zip(result.tokens, ratios) if r < 1]
    last = result.tokens[-1]
    if len(below) == len(ratios):
        against = f"below PCA at every k = 1..{last} ({ratios[-1]:.2f}x PCA at k = {last})"
    elif below:
        against = (f"below PCA at k = {_ranges(below)}; {ratios[-1]:.2f}x PCA at k = {last}")
    else:
        against = f"above PCA at every k ({ratios[-1]:.2f}x PCA at k = {last})"
    falls = all(b < a for a, b in zip(result.vle.mse, result.vle.mse[1:]))
    worst = min(result.vle.improved)
    parts = [against, ("the error falls with every token" if falls else
                       "the error does not fall with every token")
             + f" (each token improves at least {worst:.0%} of images)"]
    if result.masks is not None:
        parts += mask_verdict(result.masks)
    return "; ".join(parts) + "."


def mask_verdict(masks: MaskScores) -> list[str]:
    """The verdict's clauses on how the masks split the scenes, as far as they were scored."""
    parts = []
    if masks.fg_ari is not None:
        parts.append(f"FG-ARI {masks.fg_ari:.2f}, count accuracy {masks.count_accuracy:.2f}"
                     + ("" if masks.count_errors is None else
                        f" ({masks.count_errors['too many']:.0%} of images with too many "
                        f"masks, {masks.count_errors['too few']:.0%} too few)")
                     + ("" if masks.merged_share is None else
                        f", {masks.merged_share:.0%} of objects share a token"))
    if masks.missed_pixels:
        parts.append(f"main masks miss {masks.missed_pixels['thin parts']:.0%} of thin object "
                     f"parts, {masks.missed_pixels['elsewhere']:.0%} of other object pixels")
    if masks.label_tells_token:
        label, value = max(masks.label_tells_token.items(), key=lambda item: item[1])
        parts.append(f"the {label} of an object tells which token holds it at {value:.2f} "
                     f"(0: objects taken in turn, 1: tokens are slots for {label}s)")
    if masks.resumed_share is not None:
        parts.append(f"a token claims after an empty mask in {masks.resumed_share:.0%} of images")
    return parts


def _ranges(ks: list[int]) -> str:
    """[1, 2, 3, 5] -> "1..3, 5"."""
    runs, start = [], ks[0]
    for a, b in zip(ks, ks[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}..{a}" if a > start else f"{a}")
            start = b
    return ", ".join(runs)


def run_blocks(info: RunInfo | None, eval_seconds: float, command: str) -> list[Block]:
    """How the run was made and what it took."""
    if info is None:
        return [f"Evaluated in {eval_seconds:.0f} s by: {command}"]
    rate = info.steps / info.train_seconds if info.train_seconds else 0.0
    sessions = f" over {info.sessions} sessions" if info.sessions > 1 else ""
    rows = [["trained", f"{info.steps} steps in {info.train_seconds / 60:.1f} min"
                        f"{sessions} ({rate:.2f} steps/s)"],
            ["evaluated", f"in {eval_seconds / 60:.1f} min"],
            ["host", describe(info.host)], ["made by", info.command]]
    if command != info.command:
        rows.append(["evaluated by", command])
    return [(["run", ""], rows)]


def write_report(result: Evaluation, recipe_text: str, title: str, folder: Path,
                 info: RunInfo | None = None, eval_seconds: float = 0.0,
                 command: str = "") -> Path:
    """folder/report.html: one file, readable offline (images inlined), holding a verdict, the
    run's making, the numbers and every figure found in `folder`."""
    figures = [("curve.png", "test MSE per token, beside PCA at equal floats"),
               ("grid.png", "input, then the reconstruction after each token"),
               ("masks.png", "input, then each token's mask and masked part"),
               ("similarity.png", "cosine similarity of the tokens of one image, mean over images"),
               ("probe.png", "linear probe accuracy from the first k tokens"),
               ("adaptive.png", "adaptive length: MSE against mean tokens used"),
               ("lengths.png", "test images sorted by the tokens they got at E_4: input, then "
                               "the reconstruction at that length"),
               ("training.png", "training loss and the checkpoints' test MSE")]
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='verdict'>{html.escape(verdict(result))}</p>",
            f"<p>{result.test_images} test images, {result.image.height} x "
            f"{result.image.width} x {result.image.channels}; one token = "
            f"{result.floats[0]} floats.</p>",
            html_blocks(run_blocks(info, eval_seconds, command)),
            "<h2>Reconstruction per token</h2>", html_blocks([curve_table(result)]),
            "<h2>Token separation</h2>", html_blocks(separation_blocks(result))]
    if result.masks is not None:
        body += ["<h2>Masks</h2>", html_blocks([mask_information(result),
                                                 (["measure", "value"], mask_rows(result))])]
    if result.adaptive is not None:
        body += ["<h2>Adaptive length</h2>", html_blocks(adaptive_blocks(result))]
    body += ["<h2>Figures</h2>"] + [_image(folder / name, caption) for name, caption in figures
                                    if (folder / name).is_file()]
    body += ["<h2>Recipe</h2>", f"<pre>{html.escape(recipe_text)}</pre>"]
    path = folder / "report.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                    f"{html.escape(title)}</title><style>{STYLE}</style></head><body>"
                    + "\n".join(body) + "</body></html>")
    return path


def compare(results: dict[str, Evaluation], out: Path) -> str:
    """Write out/compare.png (every run's per-token curve, PCA at each run's floats per token)
    and out/compare.md; return the Markdown. Runs must share one image size."""
    sizes = {name: attrs.astuple(r.image) for name, r in results.items()}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{n}: {c} x {h} x {w}" for n, (c, h, w) in sizes.items())
        raise VleKitError(f"these runs were evaluated on images of different sizes ({listing}); "
                          f"compare runs of one image size")
    out.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.5))
    ax = _mse_axes(fig, "test MSE after k tokens")
    pca = {}  # one PCA curve per data set and token size, from the run with the most tokens
    for name, r in results.items():
        ax.plot(r.tokens, r.vle.mse, "o-", label=name)
        key = (r.data, r.floats[0])
        if key not in pca or len(r.tokens) > len(pca[key].tokens):
            pca[key] = r
    pca_names = {key: f"PCA ({key[1]} floats per token{', ' + key[0] if key[0] else ''})"
                 for key in pca}
    for key, r in pca.items():
        ax.plot(r.tokens, r.pca.mse, "k:", alpha=0.6, label=pca_names[key])
    ax.legend(fontsize="small")
    _save(fig, out / "compare.png")
    k_max = max(len(r.tokens) for r in results.values())

    def row(name: str, mse: list[float], similarity: str) -> list[str]:
        return [name, *(f"{m:.5f}" for m in mse), *[""] * (k_max - len(mse)), similarity]

    rows = [row(name, r.vle.mse, f"{r.separation['similarity']['mean_off_diagonal']:.3f}")
            for name, r in results.items()]
    rows += [row(pca_names[key], r.pca.mse, "") for key, r in pca.items()]
    text = markdown(["Test MSE after k tokens; similarity = mean off-diagonal cosine similarity "
                     "of an image's tokens.",
                     (["run", *(f"k={k}" for k in range(1, k_max + 1)), "similarity"], rows)])
    (out / "compare.md").write_text(text + "\n")
    return text
