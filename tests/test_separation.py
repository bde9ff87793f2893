"""Token separation measures: similarity within an image, object claims, probes."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from vle_kit import separation


def test_identical_tokens_are_fully_similar_and_orthogonal_ones_not():
    same = torch.ones(4, 3, 8)
    assert np.isclose(separation.token_similarity(same)["mean_off_diagonal"], 1.0)
    orthogonal = torch.eye(3)[None].repeat(4, 1, 1)
    result = separation.token_similarity(orthogonal)
    assert np.isclose(result["mean_off_diagonal"], 0.0)
    assert np.allclose(np.diag(result["matrix"]), 1.0)


@given(st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_claims_are_shares_that_sum_to_one(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(n, k, 1, 6, 6, generator=g)
    objects = torch.randint(0, 4, (n, 6, 6), generator=g)
    claimed = separation.claims(weights, objects)
    assert (claimed >= 0).all() and torch.allclose(claimed.sum(2), torch.ones(n, k))


def test_a_token_claims_the_object_its_weight_lies_on():
    objects = torch.zeros(1, 4, 4, dtype=torch.long)
    objects[0, :2] = 1
    objects[0, 2:, :2] = 2
    weights = torch.stack([(objects == 1).float(), (objects == 0).float(),
                           (objects == 2).float()], 1)[:, :, None]
    image, token, object_id = separation.object_tokens(separation.claims(weights, objects))
    assert token.tolist() == [0, 2] and object_id.tolist() == [1, 2], "background token dropped"


def test_probe_reads_a_separable_label_and_nmi_finds_its_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    features = rng.normal(size=(120, 5)) * 0.1
    features[np.arange(120), labels] += 3
    assert separation.probe_accuracy(features, labels, features, labels) == 1.0
    assert separation.cluster_nmi(features, labels) > 0.95
    shuffled = rng.permutation(labels)
    assert separation.cluster_nmi(features, shuffled) < 0.2
