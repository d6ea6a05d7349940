"""A small PyTorch image network, for the ``torch_module`` extractor's tests (named in params as
``tiny_net:TinyNet``, the way a user names a class in their own package)."""

import torch


class TinyNet(torch.nn.Module):
    def __init__(self, width: int = 8, classes: int = 5):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))
