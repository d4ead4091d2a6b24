"""Convert openai's published DALL-E dVAE encoder (`encoder.pkl`, a pickled PyTorch module
from the `dall-e` package) into a beit-rs tokenizer folder:

    pip install DALL-E attrs torch safetensors
    python scripts/convert_dalle_encoder.py encoder.pkl OUT_DIR

OUT_DIR/model.safetensors keeps the module's own parameter names (blocks.input.w,
blocks.group_1.block_1.res_path.conv_1.w, ...) in float32; OUT_DIR/config.json holds
group_count, n_hid, n_blk_per_group, input_channels and vocab_size. `DalleEncoder::from_folder`
(and `--tokenizer OUT_DIR`) reads it.
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


def main(src: str, out: str) -> None:
    enc = torch.load(src, map_location="cpu", weights_only=False)  # needs the dall_e classes
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in enc.state_dict().items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = {k: int(getattr(enc, k)) for k in ("group_count", "n_hid", "n_blk_per_group", "input_channels", "vocab_size")}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {folder}: {sum(v.numel() for v in state.values())} parameters, {config}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
