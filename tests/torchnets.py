"""Source text of the PyTorch networks the PyTorch-source tests build, as a user's code folder holds them.

The tests write it into the workspace (a factory imports it from there) and import it
themselves to save the .pt2, TorchScript and state_dict files.
"""

CODE = '''
import torch
from torch import nn
import torch.nn.functional as F


def conv(cin, cout, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class SmallCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.body = nn.Sequential(conv(3, 16, 2), conv(16, 16, 1, groups=16), conv(16, 32, 2), nn.MaxPool2d(2))
        self.head = nn.Linear(32, classes)

    def forward(self, image):
        x = self.body(image)
        return torch.softmax(self.head(x.mean((2, 3))), dim=1)


class SmallDetector(nn.Module):
    """Two YOLO-style heads: a stride-8 one and a stride-16 one fed back up by nearest upsampling."""

    def __init__(self, anchors=3, classes=4):
        super().__init__()
        out = anchors * (5 + classes)
        self.stem = nn.Sequential(conv(3, 16, 2), conv(16, 32, 2), conv(32, 32, 2))
        self.down = conv(32, 64, 2)
        self.lateral = nn.Conv2d(64, 32, 1)
        self.head8 = nn.Conv2d(64, out, 1)
        self.head16 = nn.Conv2d(64, out, 1)

    def forward(self, image):
        p8 = self.stem(image)
        p16 = self.down(p8)
        up = F.interpolate(self.lateral(p16), scale_factor=2, mode="nearest")
        return self.head8(torch.cat([p8, up], 1)), self.head16(p16)


def build(name, **kwargs):
    torch.manual_seed(0)
    net = {"cnn": SmallCNN, "detector": SmallDetector}[name](**kwargs)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # trained-looking statistics, not the identity
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()
'''
