"""`mnist`: torchvision's MNIST (28 x 28 grey digits, 10 classes) from a local copy."""

from torchvision.datasets import MNIST

from vle_kit import hookimpl
from vle_kit.torchvision_data import TorchvisionDataset


class MnistDataset(TorchvisionDataset):
    source = MNIST
    name = "MNIST"
    layout = ("MNIST/raw/ holding train-images-idx3-ubyte, train-labels-idx1-ubyte, "
              "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (un-gzipped)")


@hookimpl
def register_datasets(register):
    register("mnist", MnistDataset)
