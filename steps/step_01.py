"""Step 01: the model configuration.

GPT-2 small is fully described by a handful of numbers. Every later step reads
its sizes from this one object, so getting them right here matters everywhere.
"""

from dataclasses import dataclass


# ANCHOR: config
@dataclass
class GPT2Config:
    """The hyperparameters of GPT-2 small (124M parameters)."""

    # TODO 1: The vocabulary size: how many different tokens GPT-2 knows.
    # Hint: GPT-2's BPE has 50,000 merges + 256 byte tokens + 1 <|endoftext|>.
    #>>> TODO 1
    raise NotImplementedError("step 01, TODO 1")
    #<<< TODO 1
    # TODO 2: The longest sequence the model can read (its context length).
    # Hint: a power of two, 1K.
    #>>> TODO 2
    raise NotImplementedError("step 01, TODO 2")
    #<<< TODO 2
    # TODO 3: The width of every hidden vector, the number of transformer
    # blocks, and the number of attention heads per block.
    # Hint: 768 wide, 12 blocks, 12 heads of 64 dimensions each.
    #>>> TODO 3
    raise NotImplementedError("step 01, TODO 3")
    #<<< TODO 3
    # TODO 4: The MLP's inner width (None means 4 * n_embd) and LayerNorm's
    # epsilon, the small number that keeps it from dividing by zero.
    # Hint: Hugging Face leaves n_inner unset; epsilon is 1e-5.
    #>>> TODO 4
    raise NotImplementedError("step 01, TODO 4")
    #<<< TODO 4

    @property
    def head_dim(self) -> int:
        """The width of one attention head: n_embd split across n_head."""
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        """The MLP's hidden width: n_inner, or 4 * n_embd when it is unset."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd
# ANCHOR_END: config
