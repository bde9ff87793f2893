"""Does each token of an image stand for something different? (notebook: "Highlight 3 things")

Three measures, all on tokens flattened to vectors: the cosine similarity of the K tokens of one
image; how well k-means on the tokens recovers a label (NMI); and how well a linear probe reads
the label from them; the last two beside PCA features of the same size. Labels are per object
(shapes: a token stands for the object it claims most) or per image (digits: the class).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor


def token_similarity(tokens: Tensor) -> dict:
    """tokens (N, K, F) -> the mean K x K cosine similarity matrix over images, and the mean of
    its off-diagonal entries (1 = the tokens of an image all point the same way)."""
    unit = torch.nn.functional.normalize(tokens.flatten(2).double(), dim=2)
    matrix = (unit @ unit.transpose(1, 2)).mean(0)
    k = matrix.shape[0]
    off = (matrix.sum() - matrix.diagonal().sum()) / max(k * (k - 1), 1)
    return {"matrix": matrix.tolist(), "mean_off_diagonal": off.item()}


def claims(weights: Tensor, objects: Tensor, ids: int | None = None) -> Tensor:
    """weights (N, K, 1, H, W) >= 0 (a token's mask, or the size of its part) and objects
    (N, H, W) -> (N, K, ids): the share of each token's weight on each object id
    (0 = background); ids defaults to the largest id + 1."""
    ids = int(objects.max()) + 1 if ids is None else ids
    onehot = torch.nn.functional.one_hot(objects, ids).to(weights.dtype)  # (N, H, W, O + 1)
    per_object = torch.einsum("nkchw,nhwo->nko", weights, onehot)
    return per_object / per_object.sum(2, keepdim=True).clamp_min(1e-12)


def object_tokens(claimed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(image, token, object id) of every token whose largest claim is a foreground object."""
    best = claimed.argmax(2)
    image, token = torch.nonzero(best > 0, as_tuple=True)
    return image, token, best[image, token]


def object_pixels(images: Tensor, objects: Tensor, image: Tensor, object_id: Tensor) -> Tensor:
    """Each listed object alone on a blank canvas, flattened: the PCA baseline's input."""
    keep = (objects[image] == object_id[:, None, None]).unsqueeze(1)
    return (images[image] * keep).flatten(1)


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def cluster_nmi(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """NMI between the label and k-means (k = number of label values) on unit-length features."""
    k = len(np.unique(labels))
    clusters = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(_unit(features))
    return float(normalized_mutual_info_score(labels, clusters))


def probe_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                   test_labels: np.ndarray) -> float:
    """Test accuracy of a linear classifier (standardised logistic regression) fit on train."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(probe.fit(train, train_labels).score(test, test_labels))


def pca_features(train: np.ndarray, test: np.ndarray, size: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA with `size` components (at most what train allows), fit on train, of both sets."""
    size = min(size, *train.shape)
    pca = PCA(n_components=size, random_state=seed).fit(train)
    return pca.transform(train), pca.transform(test)


def both_measures(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                  test_labels: np.ndarray) -> dict:
    return {"nmi": cluster_nmi(test, test_labels),
            "probe": probe_accuracy(train, train_labels, test, test_labels)}


def object_separation(train: dict, test: dict, floats: int) -> dict:
    """Per object label (shape, colour, ...): NMI and probe accuracy of the tokens that claim
    an object, and of PCA (`floats` components) of that object's pixels alone.

    train, test: {"tokens" (N, K, F), "claims" (N, K, O + 1), "images" (N, C, H, W) float,
    "objects" (N, H, W), "labels" {name: (N, max_objects)}}."""
    picked = {}
    for name, split in (("train", train), ("test", test)):
        image, token, object_id = object_tokens(split["claims"])
        picked[name] = {"tokens": split["tokens"][image, token].flatten(1).numpy(),
                        "pixels": object_pixels(split["images"], split["objects"], image,
                                                object_id).numpy(),
                        "labels": {n: lab[image, object_id - 1].numpy()
                                   for n, lab in split["labels"].items()},
                        "share": len(image) / split["claims"][:, :, 0].numel()}
    tr, te = picked["train"], picked["test"]
    result = {"tokens_on_objects": te["share"], "tokens": len(te["tokens"])}
    if len(tr["tokens"]) < 2 or len(te["tokens"]) < 2:
        return result
    pca_tr, pca_te = pca_features(tr["pixels"], te["pixels"], floats)
    for name in te["labels"]:
        ytr, yte = tr["labels"][name], te["labels"][name]
        if len(np.unique(ytr)) < 2 or len(np.unique(yte)) < 2:
            continue
        result[name] = {"tokens": both_measures(tr["tokens"], ytr, te["tokens"], yte),
                        "pca": both_measures(pca_tr, ytr, pca_te, yte)}
    return result


def image_separation(train: dict, test: dict, floats: int) -> dict:
    """Per image label (digits: the class): probe accuracy from the first k tokens, k = 1..K,
    beside PCA of the image with k x `floats` components; NMI of all K tokens and of PCA.

    train, test: {"tokens" (N, K, F), "images" (N, C, H, W) float, "labels" {name: (N, 1)}}."""
    k_max = train["tokens"].shape[1]
    # components come strongest first, so one fit serves every k: the first k x floats of it
    pca_tr, pca_te = pca_features(train["images"].flatten(1).numpy(),
                                  test["images"].flatten(1).numpy(), k_max * floats)
    result = {}
    for name in test["labels"]:
        ytr, yte = train["labels"][name][:, 0].numpy(), test["labels"][name][:, 0].numpy()
        if len(np.unique(ytr)) < 2 or len(np.unique(yte)) < 2:
            continue
        tokens, pca = [], []
        for k in range(1, k_max + 1):
            tok_tr = train["tokens"][:, :k].flatten(1).numpy()
            tok_te = test["tokens"][:, :k].flatten(1).numpy()
            tokens.append(probe_accuracy(tok_tr, ytr, tok_te, yte))
            pca.append(probe_accuracy(pca_tr[:, :k * floats], ytr, pca_te[:, :k * floats], yte))
        result[name] = {"probe_tokens": tokens, "probe_pca": pca,
                        "nmi_tokens": cluster_nmi(tok_te, yte),
                        "nmi_pca": cluster_nmi(pca_te[:, :k_max * floats], yte)}
    return result
