"""Data sets: the shapes scenes are deterministic and labelled; image folders read any images."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from vle_kit_plugins.data_image_folder import ImageFolderConfig, ImageFolderDataset
from vle_kit_plugins.data_shapes import COLOURS, ShapesConfig, ShapesDataset

from vle_kit.data import augment, augmented_orders, channel_orders, square_symmetries
from vle_kit.errors import VleKitError


def shapes(**options):
    return ShapesDataset(ShapesConfig(**{"size": 32, "train": 40, "test": 10, **options}))


def test_shapes_are_deterministic_and_splits_differ():
    a, b = shapes().load("train"), shapes().load("train")
    assert torch.equal(a.images, b.images) and torch.equal(a.objects, b.objects)
    test = shapes().load("test")
    assert not torch.equal(a.images[:10], test.images)
    assert not torch.equal(shapes(seed=1).load("train").images, a.images)


def test_shapes_prefix_is_stable_when_the_split_grows():
    small, large = shapes(train=5).load("train"), shapes(train=40).load("train")
    assert torch.equal(small.images, large.images[:5])


def test_shapes_labels_match_the_pixels():
    data = shapes().load("train")
    assert data.images.shape == (40, 3, 32, 32) and data.images.dtype == torch.uint8
    for i in range(len(data)):
        present = data.labels["shape"][i] >= 0
        n = int(present.sum())
        assert 2 <= n <= 6
        ids = data.objects[i].unique().tolist()
        assert ids == list(range(n + 1)), "every object visible, ids 1..n, 0 = background"
        colours = data.labels["colour"][i][present]
        assert len(set(colours.tolist())) == n, "colours are distinct within a scene"
        for obj in range(1, n + 1):
            pixel = data.images[i][:, data.objects[i] == obj][:, 0]
            assert pixel.tolist() == COLOURS[colours[obj - 1]].tolist()


def test_shapes_object_count_range():
    data = shapes(min_objects=3, max_objects=3).load("test")
    assert ((data.labels["shape"] >= 0).sum(1) == 3).all()


def test_image_folder_reads_resizes_and_labels(image_tree):
    ds = ImageFolderDataset(ImageFolderConfig(root=str(image_tree), size=16, train=8, test=4))
    train, test = ds.load("train"), ds.load("test")
    assert train.images.shape == (8, 3, 16, 16) and test.images.shape == (4, 3, 16, 16)
    assert set(train.labels["class"].flatten().tolist()) <= {0, 1}
    assert torch.equal(ds.load("train").images, train.images)


def test_image_folder_too_small_or_missing(image_tree, tmp_path):
    with pytest.raises(VleKitError, match="holds 12 images, the recipe asks for data.train "
                                          r"\+ data.test = 20"):
        ImageFolderDataset(ImageFolderConfig(root=str(image_tree), train=16, test=4)).load("test")
    with pytest.raises(VleKitError, match="is not a folder"):
        ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "no"), train=1,
                                             test=1)).load("train")


def test_image_folder_unreadable_file(image_tree):
    (image_tree / "cats" / "0.png").write_bytes(b"not a png")
    ds = ImageFolderDataset(ImageFolderConfig(root=str(image_tree), size=16, train=8, test=4))
    with pytest.raises(VleKitError, match="0.png: not a readable image"):
        ds.load("train"), ds.load("test")


def photo_tree(root, held_out="test"):
    """root/train/{a,b}/*.png (5 each) and root/<held_out>/{a,b}/*.png (2 each)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 5), (held_out, 2)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{split}{i}.png")
    return root


@pytest.mark.parametrize("held_out", ["test", "val"])
def test_image_folder_with_train_and_test_folders_takes_them_as_the_splits(tmp_path, held_out):
    root = photo_tree(tmp_path / "photos", held_out)
    ds = ImageFolderDataset(ImageFolderConfig(root=str(root), size=16, train=10, test=4))
    names = {split: [p.name for p in ds.files(split)[0]] for split in ("train", "test")}
    assert all(n.startswith("train") for n in names["train"]) and len(names["train"]) == 10
    assert all(n.startswith(held_out) for n in names["test"]) and len(names["test"]) == 4
    train = ds.load("train")
    assert train.labels["class"].flatten().tolist() == [0] * 5 + [1] * 5, "classes below train/"
    capped = ImageFolderDataset(ImageFolderConfig(root=str(root), size=16, train=3, test=1))
    assert set(p.name for p in capped.files("train")[0]) < set(names["train"])
    with pytest.raises(VleKitError, match=r"data.train: .*train holds 10 images, the recipe "
                                          r"asks for 11"):
        ImageFolderDataset(ImageFolderConfig(root=str(root), train=11, test=1)).load("train")


def test_image_folder_without_images_is_one_line(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(VleKitError, match=r"data.root: .*train holds no image files \(.bmp"):
        ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "empty"), train=1,
                                             test=1)).load("train")


def test_image_modes_are_converted_to_8_bit_rgb(tmp_path):
    import numpy as np
    from PIL import Image

    from vle_kit.images import read_image

    grey = np.full((8, 8), 100, dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "grey.png", 8).unique().tolist() == [100]
    assert read_image(tmp_path / "rgba.png", 8)[:, 0, 0].tolist() == [200, 0, 0], "alpha dropped"
    assert read_image(tmp_path / "deep.png", 8).unique().tolist() == [127], "16 bits scaled"


def test_a_truncated_image_is_one_line(tmp_path):
    import numpy as np
    from PIL import Image

    from vle_kit.images import read_image

    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(VleKitError, match=r"cut.jpg: not a readable image"):
        read_image(tmp_path / "cut.jpg", 16)


def test_digits_come_from_scikit_learn_scaled_and_labelled():
    from vle_kit_plugins.data_digits import DigitsConfig, DigitsDataset

    data = DigitsDataset(DigitsConfig(size=16, train=50, test=20))
    train, test = data.load("train"), data.load("test")
    assert train.images.shape == (50, 1, 16, 16) and train.images.dtype == torch.uint8
    assert train.labels["class"].shape == (50, 1) and set(train.labels["class"].ravel().tolist())
    assert int(train.images.max()) > 200, "ink reaches white"
    assert not torch.equal(train.images[:20], test.images)
    assert test.with_channels(3).images.shape == (20, 3, 16, 16)


def test_a_split_larger_than_the_set_is_refused():
    from vle_kit_plugins.data_digits import DigitsConfig, DigitsDataset

    with pytest.raises(VleKitError, match="holds 1797 images, the recipe asks for .* = 2000"):
        DigitsDataset(DigitsConfig(train=1500, test=500)).load("train")


def test_colour_images_cannot_become_grey():
    with pytest.raises(VleKitError, match="3 channels per image, the model takes 1"):
        shapes().load("test").with_channels(1)


def test_cifar10_and_mnist_read_local_files_with_their_labels(cifar10_root, mnist_root):
    from vle_kit_plugins.data_cifar10 import Cifar10Dataset
    from vle_kit_plugins.data_mnist import MnistDataset

    cifar = Cifar10Dataset(Cifar10Dataset.Config(root=str(cifar10_root), size=32, train=25,
                                                 test=4))
    train = cifar.load("train")
    assert train.images.shape == (25, 3, 32, 32) and train.labels["class"].shape == (25, 1)
    mnist = MnistDataset(MnistDataset.Config(root=str(mnist_root), size=16, train=8, test=4))
    test = mnist.load("test")
    assert test.images.shape == (4, 1, 16, 16) and test.images.dtype == torch.uint8
    assert 0 <= int(test.labels["class"].min()) and int(test.labels["class"].max()) <= 9


def test_missing_torchvision_files_say_where_they_go(tmp_path):
    from vle_kit_plugins.data_cifar10 import Cifar10Dataset

    with pytest.raises(VleKitError, match=r"no CIFAR-10 in .*nothing is downloaded: put the "
                                          r"folder cifar-10-batches-py/"):
        Cifar10Dataset(Cifar10Dataset.Config(root=str(tmp_path))).load("train")


def test_asking_for_more_images_than_a_split_holds(mnist_root):
    from vle_kit_plugins.data_mnist import MnistDataset

    with pytest.raises(VleKitError, match="data.train: MNIST's train split holds 8 images, "
                                          "the recipe asks for 20000"):
        MnistDataset(MnistDataset.Config(root=str(mnist_root))).load("train")


def test_the_cifar10_recipe_trains_on_a_local_copy(cifar10_root, tmp_path):
    from conftest import ROOT, TINY

    from vle_kit.recipe import load_recipe
    from vle_kit.runs import RunDir
    from vle_kit.train import train

    recipe, registry = load_recipe(ROOT / "recipes" / "cifar10.toml", TINY + [
        f"data.root='{cifar10_root}'", "data.train=25", "data.test=4", "train.steps=2"])
    result = train(recipe, registry, RunDir.create(tmp_path, "cifar"))
    assert (result.image.channels, result.image.height, result.image.width) == (3, 16, 16)
    assert "class" in result.separation["images"]


def the_eight_symmetries(image):
    turned = [image, image.flip(-1), image.flip(-2), image.flip(-1).flip(-2)]
    return turned + [t.transpose(-1, -2) for t in turned]


def channel_permutations(image):
    return [image[list(p)] for p in itertools.permutations(range(image.shape[0]))]


@given(seed=st.integers(0, 2**63 - 1), n=st.integers(1, 64),
       names=st.sampled_from([("flips",), ("channels",), ("flips", "channels")]))
def test_augmenting_only_rearranges_each_image(seed, n, names):
    """Every image comes back as a version of itself (one of the square's 8 symmetries, its
    channels in another order, or both): no value made up or lost; the same for the same seed."""
    images = torch.arange(n * 3 * 5 * 5, dtype=torch.uint8).reshape(n, 3, 5, 5)
    out = augment(images, names, seed)
    assert torch.equal(out, augment(images, names, seed))
    for image, version in zip(images, out):
        versions = [image]
        if "flips" in names:
            versions = [v for u in versions for v in the_eight_symmetries(u)]
        if "channels" in names:
            versions = [v for u in versions for v in channel_permutations(u)]
        assert any(torch.equal(version, v) for v in versions)


def test_augmenting_draws_every_symmetry_and_every_order():
    image = torch.arange(3 * 4 * 4, dtype=torch.uint8).reshape(1, 3, 4, 4)
    many = image.expand(400, -1, -1, -1)
    eight = the_eight_symmetries(image[0])
    assert [torch.equal(a, b[0]) for a, b in zip(eight, square_symmetries(image))] == [True] * 8
    assert len({tuple(t.flatten().tolist()) for t in eight}) == 8  # all distinct
    turned = augment(many, ("flips",), 0)
    assert {next(i for i, t in enumerate(eight) if torch.equal(out, t)) for out in turned} == \
        set(range(8))
    assert len(channel_orders(image)) == 6
    assert len({tuple(out[:, 0, 0].tolist()) for out in augment(many, ("channels",), 0)}) == 6


def test_augmented_orders_reorder_an_image_as_augmenting_does():
    image = torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8)
    versions = [v[0] for u in square_symmetries(image) for v in channel_orders(u)]
    orders = augmented_orders((3, 4, 4), ("flips", "channels"))
    assert len(orders) == 48
    for version, order in zip(versions, orders):
        assert torch.equal(image.flatten()[order], version.flatten())


def test_a_ranks_share_of_a_batch_is_augmented_as_in_the_whole_batch():
    """Under torchrun each rank augments its share; drawn for the whole batch at the rank's
    places, the images are those one process would train on."""
    from vle_kit.distributed import EpochBatches

    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    one = EpochBatches(64, 16, seed=3, ranks=(0, 1))
    whole = augment(images[one(5)], ("flips", "channels"), 11, one.places(), 16)
    for rank in range(2):
        share = EpochBatches(64, 16, seed=3, ranks=(rank, 2))
        assert torch.equal(share.places(), torch.arange(rank, 16, 2))
        assert torch.equal(images[share(5)], images[one(5)][rank::2])
        assert torch.equal(augment(images[share(5)], ("flips", "channels"), 11, share.places(),
                                   16), whole[rank::2])
