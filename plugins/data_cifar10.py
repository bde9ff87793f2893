"""`cifar10`: torchvision's CIFAR-10 (32 x 32 colour, 10 classes) from a local copy."""

from torchvision.datasets import CIFAR10

from vle_kit import hookimpl
from vle_kit.torchvision_data import TorchvisionDataset


class Cifar10Dataset(TorchvisionDataset):
    source = CIFAR10
    name = "CIFAR-10"
    layout = ("the folder cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta) "
              "from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extracted")


@hookimpl
def register_datasets(register):
    register("cifar10", Cifar10Dataset)
