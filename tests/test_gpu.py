"""CUDA checks (cuDNN fused path, training and sampling on the GPU); skipped without a GPU."""

import pytest
import torch

import rnnkit
from rnnkit.layers import Recurrent

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cudnn_fused_path_matches_cells_path(kind):
    torch.manual_seed(0)
    fused = Recurrent(kind, 8, 16, num_layers=2).cuda().eval()
    cells = Recurrent(kind, 8, 16, num_layers=2, impl="cells").cuda().eval()
    cells.load_state_dict(fused.state_dict())
    x = torch.randn(4, 10, 8, device="cuda")
    torch.testing.assert_close(fused(x)[0], cells(x)[0], rtol=1e-4, atol=1e-5)


def test_train_and_sample_on_cuda(tmp_path, hamlet):
    model_cfg, cfg = rnnkit.configs(preset="tiny", train={
        "data": str(hamlet), "device": "cuda", "max_steps": 40, "precision": "auto"})
    final = rnnkit.train(model_cfg, cfg, out=tmp_path / "run")
    assert final["val_loss"] < 3.5
    text = rnnkit.sample(tmp_path / "run", prime_text="Ham", length=50, device="cuda")[0]
    assert text.startswith("Ham") and len(text) == 53
