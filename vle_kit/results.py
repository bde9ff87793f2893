"""What an evaluation found, as eval.json holds it: one typed record that the evaluation
writes and the report, the CLI, `vle-kit compare` and the benchmarks read."""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from vle_kit.adaptive import Adaptive, Point, Saving
from vle_kit.errors import VleKitError

FORMAT = 2  # eval.json's layout; 1 = the untyped files written before vle_kit kept a format


@attrs.frozen(kw_only=True)
class Curve:
    """Means over the test images after k = 1..K tokens (or PCA with as many floats)."""

    mse: list[float]
    psnr: list[float]
    ssim: list[float]
    improved: list[float]  # share of images whose error fell at token k


@attrs.frozen(kw_only=True)
class MaskScores:
    """How a mask model's masks split the test scenes (decomposition.py)."""

    collapse_share: float
    fg_ari: float | None = None  # where the data has object ids
    count_accuracy: float | None = None
    count_errors: dict[str, float] | None = None  # "too many", "too few" -> share of images
    merged_share: float | None = None  # objects whose main mask is another object's too
    missed_pixels: dict[str, float] | None = None  # "thin parts", "elsewhere" -> share missed
    resumed_share: float | None = None  # images where a token claims after an empty mask
    label_tells_token: dict[str, float] | None = None  # label name -> 0 (taken in turn) .. 1


@attrs.frozen(kw_only=True)
class ImageShape:
    channels: int
    height: int
    width: int


@attrs.frozen(kw_only=True)
class Evaluation:
    """eval.json: the per-token curves of the VLE (prefixes of one K-token encoding, and the
    model asked for exactly k) beside PCA at equal floats; how the tokens separate
    (separation.py's measures, by name); the masks' scores for mask models."""

    recipe: str
    data: str
    tokens: list[int]  # k = 1..K
    floats: list[int]  # floats held by k tokens
    test_images: int
    image: ImageShape
    vle: Curve
    vle_asked_k: Curve
    pca: Curve
    separation: dict
    masks: MaskScores | None = None
    adaptive: Adaptive | None = None  # each image as many tokens as it needs (adaptive.py)
    mask_floats: int = 0  # floats a token's mask adds when the masks look at the image (H x W)
    pca_with_masks: Curve | None = None  # PCA keeping the token's and the mask's floats
    pca_augmented: Curve | None = None  # PCA fitted on the training images as train.augment
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self), indent=2)

    def write(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def from_json(cls, text: str, where: str = "eval.json") -> Evaluation:
        """Read eval.json; a file of another format is a one-line error saying what to do."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise VleKitError(f"{where}: not JSON ({e})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            found = raw.get("format", 1) if isinstance(raw, dict) else "unknown"
            raise VleKitError(f"{where}: written by another vle_kit (eval.json format {found}, "
                              f"this one reads {FORMAT}); run `vle-kit eval` on the run again")
        try:
            adaptive = raw.get("adaptive")
            if adaptive is not None:
                adaptive = Adaptive(**{**adaptive,
                                       "points": [Point(**p) for p in adaptive["points"]],
                                       "savings": [Saving(**s) for s in adaptive["savings"]]})
            return cls(**{**raw, "image": ImageShape(**raw["image"]),
                          **{c: Curve(**raw[c]) for c in ("vle", "vle_asked_k", "pca")},
                          **{c: _optional(Curve, raw.get(c))
                             for c in ("pca_with_masks", "pca_augmented")},
                          "masks": _optional(MaskScores, raw.get("masks")), "adaptive": adaptive})
        except (KeyError, TypeError) as e:
            raise VleKitError(f"{where}: an incomplete eval.json ({e})") from None

    @classmethod
    def read(cls, path: Path) -> Evaluation:
        try:
            return cls.from_json(path.read_text(), str(path))
        except FileNotFoundError:
            raise VleKitError(f"{path}: no such file") from None


def _optional(kind: type, fields: dict | None) -> object | None:
    """kind(**fields), or None where eval.json holds none."""
    return None if fields is None else kind(**fields)
