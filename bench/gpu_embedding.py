"""GPU library-build speed of the paper preset: embeddings per second (images, barcodes), fp32 and bf16.

Synthetic inputs of the real shapes in batches of 256 (3 warm-up, 20 timed); never part of the tests.

    python bench/gpu_embedding.py docs/bench_gpu_embedding.json
"""

import json
import sys
import time

import torch

from clibd_core import build_model

model = build_model("paper").cuda().eval()
out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
pixels = torch.rand(256, 3, 224, 224, device="cuda")
ids = {"input_ids": torch.randint(3, 1027, (256, 133), device="cuda")}
for precision in ("fp32", "bf16"):
    for name, run in (("images", lambda: model.image_features(pixels)), ("barcodes", lambda: model.dna_features(ids))):
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=precision == "bf16"):
            for _ in range(3):
                run()
            torch.cuda.synchronize()
            t = time.time()
            for _ in range(20):
                run()
            torch.cuda.synchronize()
        out[f"{name}_per_s_{precision}"] = round(20 * 256 / (time.time() - t), 1)
json.dump(out, open(sys.argv[1], "w"), indent=2)
print(json.dumps(out, indent=2))
