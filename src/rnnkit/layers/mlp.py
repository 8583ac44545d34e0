"""MLPHead: the decoder after an RNN, hidden layers (GELU) then a linear output layer."""

from __future__ import annotations

from torch import Tensor, nn


class MLPHead(nn.Module):
    """``logits = head(features)`` over the last dimension.

    Args:
        in_features: features per step (H, or 2H after a bidirectional RNN).
        out_features: outputs (classes, tags or vocabulary entries).
        hidden_layers: GELU layers of ``hidden_size`` units before the output layer (0: linear).
        hidden_size: units of the hidden layers (default in_features).
        dropout: applied to the input and after each hidden layer.
    """

    def __init__(self, in_features: int, out_features: int, hidden_layers: int = 0,
                 hidden_size: int | None = None, dropout: float = 0.0):
        super().__init__()
        width = hidden_size or in_features
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        for k in range(hidden_layers):
            layers += [nn.Linear(in_features if k == 0 else width, width), nn.GELU(),
                       nn.Dropout(dropout)]
        layers.append(nn.Linear(width if hidden_layers else in_features, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
