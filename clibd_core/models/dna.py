"""DNA towers: BarcodeBERT as CLIBD released it (``paper``) and a small conv-stem transformer (``lite``)."""

from __future__ import annotations

import torch
from torch import nn

from clibd_core.config import LiteDNAConfig

# PyTorch's fused encoder path ("fast path", used at inference) spends a third of the lite tower's time
# in its masked softmax on CPU: without it the tower embeds a barcode in 1.96 ms instead of 2.75 ms on
# these 2 cores (batches of 64), to within 2e-7. No other tower here uses torch's encoder layers.
torch.backends.mha.set_fastpath_enabled(False)


class PaperDNATower(nn.Module):
    """``base_dna_encoder`` = BertForMaskedLM(vocab 1027, BERT-base defaults), decoder 768→768.

    ``softmax_mean`` pooling reproduces the released models: softmax over the decoder's 768 outputs,
    averaged over all 133 positions (no attention mask). ``hidden_mean`` averages the last hidden states.
    """

    def __init__(self, embed_dim: int = 768, pooling: str = "softmax_mean") -> None:
        super().__init__()
        if pooling not in ("softmax_mean", "hidden_mean"):
            raise ValueError(f"unknown DNA pooling '{pooling}'")
        from transformers import BertConfig, BertForMaskedLM  # imported here: the lite tower does without it

        # Untied: the replaced decoder must never be re-tied to the word embeddings.
        bert = BertForMaskedLM(BertConfig(vocab_size=1027, tie_word_embeddings=False))
        bert.cls.predictions.decoder = nn.Linear(bert.config.hidden_size, embed_dim)
        self.base_dna_encoder = bert
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.pooling == "hidden_mean":
            output = self.base_dna_encoder.bert(input_ids=input_ids)
            return output.last_hidden_state.mean(dim=1)
        logits = self.base_dna_encoder(input_ids=input_ids).logits
        return logits.softmax(dim=-1).mean(dim=1)


def kmer_profile(input_ids: torch.Tensor, k: int) -> torch.Tensor:
    """L2-normalised k-mer counts (n, 4**k) of per-base ids (A=1 C=2 G=3 T=4; N and padding break words).

    The same profile a 5-mer 1-NN search uses (library/kmers.py), computed in the graph from the ids.
    """
    bases = input_ids - 1  # A..T → 0..3; N → 4, padding → -1
    windows = bases.unfold(1, k, 1)  # (n, positions, k)
    valid = ((windows >= 0) & (windows <= 3)).all(dim=-1)
    places = 4 ** torch.arange(k - 1, -1, -1, device=input_ids.device)
    codes = torch.where(valid, (windows.clamp(0, 3) * places).sum(dim=-1), 4**k)  # invalid → a spare bin
    counts = torch.zeros(input_ids.shape[0], 4**k + 1, device=input_ids.device)
    counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=counts.dtype))
    return nn.functional.normalize(counts[:, : 4**k], dim=-1)


class LiteDNATower(nn.Module):
    """Per-base embedding → strided Conv1d stem (k-mer-like tokens) → small transformer → masked mean,
    plus (``config.kmer`` > 0) a linear map of the read's k-mer profile.

    The transformer learns what a contrastive batch teaches; the profile keeps the fine differences
    between close species that mean-pooling 131 tokens loses (docs/BENCHMARKS.md, real barcodes).
    """

    def __init__(self, embed_dim: int, config: LiteDNAConfig, vocab_size: int = 6) -> None:
        super().__init__()
        self.config = config
        tokens = (config.max_len - config.kernel) // config.stride + 1
        self.embed = nn.Embedding(vocab_size, 32, padding_idx=0)
        self.stem = nn.Conv1d(32, config.width, kernel_size=config.kernel, stride=config.stride)
        self.position = nn.Parameter(torch.zeros(1, tokens, config.width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, config.ffn, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.proj = nn.Linear(config.width, embed_dim)
        self.kmer_proj = nn.Linear(4**config.kmer, embed_dim, bias=False) if config.kmer else None

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.embed(input_ids).transpose(1, 2)).transpose(1, 2)
        x = nn.functional.gelu(x) + self.position
        starts = torch.arange(x.shape[1], device=x.device) * self.config.stride
        valid = starts[None, :] < lengths[:, None]  # a token is real if its window starts inside the read
        x = self.norm(self.encoder(x, src_key_padding_mask=~valid))
        weights = valid.unsqueeze(-1).to(x.dtype)
        features = self.proj((x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0))
        if self.kmer_proj is not None:
            features = features + self.kmer_proj(kmer_profile(input_ids, self.config.kmer))
        return features
