"""Transformer shapes, parameter counts and FLOPs per token.

Parameter count (Narayanan et al. 2021, Eq. 2, generalised to grouped-query attention and gated
FFNs): per layer ``2 h^2 + 2 h kv + m h f`` matrix weights (Q and output projections, K and V of
``kv = kv_heads * head_dim`` columns, ``m = 3`` FFN matrices for SwiGLU or 2 for GeLU), plus biases
and norms; embeddings ``V h`` (twice if input and output are untied) and ``s h`` learned positions.
For GPT-3 175B this gives 174.6e9 (the paper rounds to 175.0e9).

Model FLOPs per token of training (Kaplan et al. 2020; Chowdhery et al. 2022, Appendix B, the MFU
convention): ``6 * N_matmul + 12 * l * s * h`` where ``N_matmul`` counts the weights that take part
in matrix products (layers and the output projection, not the input lookup) and the second term is
the attention scores and the attention-weighted sum (``4 s h`` per token and layer forward, times 3
for forward plus backward).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache

from hpclab._paths import data_dir
from hpclab._validate import HpclabError, check_positive
from hpclab._yaml import load_yaml

__all__ = ["Transformer", "transformer", "model_names"]


@dataclass(frozen=True)
class Transformer:
    """A decoder-only transformer.

    Parameters
    ----------
    layers, hidden, heads : int
        Number of layers ``l``, hidden size ``h`` and attention (query) heads ``a``; ``h % a == 0``.
    vocab, seq_length : int
        Vocabulary size ``V`` and training sequence length ``s``.
    kv_heads : int, optional
        Key/value heads for grouped-query attention (default ``heads``: multi-head attention);
        must divide ``heads``.
    ffn : int, optional
        FFN inner size ``f`` (default ``4 h``).
    gated_ffn : bool
        SwiGLU FFN with three matrices (Llama) instead of two (GPT).
    bias, tied_embeddings, learned_positions : bool
        GPT-style biases, one shared input/output embedding, a learned position table.
    dropout : bool
        Dropout after attention and FFN (GPT, Megatron's default 0.1): its masks are stored for
        the backward pass (1 byte per element, Korthikanti et al. 2022). Llama trains without.
    experts, top_k : int, optional
        Mixture of experts: routed experts per MoE layer (0: a dense model) and experts each
        token is routed to (default 2).
    expert_ffn, shared_experts, dense_layers : int, optional
        FFN inner size of one expert (default ``ffn``), experts every token also goes through
        (DeepSeek's shared experts), and leading layers that keep a dense FFN of size ``ffn``.
    attention_params : int, optional
        Matrix weights of one attention block when it is not the GQA form ``2h^2 + 2h kv``
        (DeepSeek's multi-head latent attention); 0 = the GQA form.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    vocab: int
    seq_length: int
    kv_heads: int = 0
    ffn: int = 0
    gated_ffn: bool = False
    bias: bool = True
    tied_embeddings: bool = True
    learned_positions: bool = True
    dropout: bool = True
    experts: int = 0
    top_k: int = 0
    expert_ffn: int = 0
    shared_experts: int = 0
    dense_layers: int = 0
    attention_params: int = 0
    published_params: float = 0.0
    published_active_params: float = 0.0
    source: str = field(default="", compare=False)

    def __post_init__(self):
        for f in ("layers", "hidden", "heads", "vocab", "seq_length"):
            check_positive(f, getattr(self, f), integer=True)
        if self.kv_heads == 0:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.ffn == 0:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        check_positive("kv_heads", self.kv_heads, integer=True)
        check_positive("ffn", self.ffn, integer=True)
        for f in ("experts", "top_k", "expert_ffn", "shared_experts", "dense_layers", "attention_params"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise HpclabError(f"{f} must be a whole number >= 0, got {v!r}")
        if self.experts:
            if self.top_k == 0:
                object.__setattr__(self, "top_k", 2)
            if self.expert_ffn == 0:
                object.__setattr__(self, "expert_ffn", self.ffn)
            if self.top_k > self.experts:
                raise HpclabError(f"top_k ({self.top_k}) must not exceed experts ({self.experts})")
            if self.dense_layers >= self.layers:
                raise HpclabError(f"dense_layers ({self.dense_layers}) must be below layers ({self.layers})")
        elif self.top_k or self.shared_experts or self.dense_layers or self.expert_ffn:
            raise HpclabError("top_k, expert_ffn, shared_experts and dense_layers need experts > 0")
        if self.hidden % self.heads:
            raise HpclabError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.heads % self.kv_heads:
            raise HpclabError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")

    # --- shape -----------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        """Width of the K (and of the V) projection: ``kv_heads * head_dim``."""
        return self.kv_heads * self.head_dim

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.gated_ffn else 2

    # --- mixture of experts -----------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        """Layers whose FFN is a mixture of experts (``layers - dense_layers``; 0 if dense)."""
        return self.layers - self.dense_layers if self.experts else 0

    @property
    def expert_params(self) -> int:
        """Matrix weights of one expert: ``m_f h f_e``."""
        return self.ffn_matrices * self.hidden * self.expert_ffn if self.experts else 0

    @property
    def routed_expert_params(self) -> int:
        """Weights of all routed experts of the model (the part expert parallelism shards)."""
        return self.moe_layers * self.experts * self.expert_params

    # --- parameters --------------------------------------------------------------------------
    @property
    def layer_tensors(self) -> float:
        """Parameter tensors of one layer, as a framework holds them: the fused QKV and the
        output projection, the FFN's matrices (each expert's and the router in a MoE layer,
        averaged over the layers), a bias beside each matrix (GPT) and the two norms (a gain, and a
        bias with LayerNorm). A GPT layer has 12."""
        per = 2 if self.bias else 1
        ffn = float(self.ffn_matrices)
        if self.experts:
            moe = self.moe_layers / self.layers
            ffn = ((1 - moe) * self.ffn_matrices
                   + moe * (self.ffn_matrices * (self.experts + self.shared_experts) + 1))
        total = (2 + ffn) * per + 2 * per  # attention's two matrices, the FFN's, two norms
        return total if self.experts else int(total)

    @property
    def expert_tensors(self) -> float:
        """The routed experts' share of :attr:`layer_tensors` (their matrices and biases,
        averaged over the layers): the tensors a ZeRO-3 list gather collects over an expert
        group rather than the whole data-parallel group. 0 for a dense model."""
        if not self.experts:
            return 0
        per = 2 if self.bias else 1
        return (self.moe_layers / self.layers) * self.ffn_matrices * self.experts * per

    @property
    def attention_matmul_params(self) -> int:
        """Matrix weights of one attention block: ``2 h^2 + 2 h kv`` (or ``attention_params``)."""
        if self.attention_params:
            return self.attention_params
        h, kv = self.hidden, self.kv_dim
        return 2 * h * h + 2 * h * kv

    def _ffn_mean(self, active: bool) -> float:
        """FFN matrix weights per layer, averaged over the layers (dense and MoE)."""
        dense = self.ffn_matrices * self.hidden * self.ffn
        if not self.experts:
            return dense
        router = self.hidden * self.experts
        n = (self.top_k if active else self.experts) + self.shared_experts
        moe = n * self.expert_params + router
        return (self.dense_layers * dense + self.moe_layers * moe) / self.layers

    @property
    def layer_matmul_params(self):
        """Weights of one layer that take part in each token's matrix products (for a MoE model
        the active ones: top-k routed and shared experts and the router, averaged over the
        layers)."""
        ffn = self._ffn_mean(active=True)
        total = self.attention_matmul_params + ffn
        return total if self.experts else int(total)

    @property
    def layer_params(self):
        """All parameters of one layer: matrices (every expert), biases (GPT) and the two norms,
        averaged over the layers of a MoE model."""
        h, kv, f = self.hidden, self.kv_dim, self.ffn
        norms = 2 * (2 * h if self.bias else h)  # LayerNorm has a gain and a bias, RMSNorm a gain
        biases = (h + 2 * kv + h + (self.ffn_matrices - 1) * f + h) if self.bias else 0
        total = self.attention_matmul_params + self._ffn_mean(active=False) + biases + norms
        return total if self.experts else int(total)

    @property
    def active_params(self):
        """Parameters each token uses (all of them for a dense model)."""
        return self.params - (self.routed_expert_params
                              - self.moe_layers * self.top_k * self.expert_params)

    @property
    def embedding_params(self) -> int:
        """Token embeddings (input, and output if untied), learned positions, final norm."""
        h = self.hidden
        emb = self.vocab * h * (1 if self.tied_embeddings else 2)
        pos = self.seq_length * h if self.learned_positions else 0
        final_norm = 2 * h if self.bias else h
        return emb + pos + final_norm

    @property
    def params(self) -> int:
        """Total parameters ``l * layer_params + embedding_params``."""
        return int(round(self.layers * self.layer_params + self.embedding_params))

    @property
    def matmul_params(self):
        """Weights in matrix products per token: the layers and the output projection."""
        return self.layers * self.layer_matmul_params + self.vocab * self.hidden

    # --- FLOPs -------------------------------------------------------------------------------
    def flops_per_token(self, seq_length=None):
        """Model FLOPs to train on one token: ``6 N_matmul + 12 l s h`` (see module docstring)."""
        s = self.seq_length if seq_length is None else seq_length
        return 6.0 * self.matmul_params + 12.0 * self.layers * s * self.hidden

    def layer_forward_flops_per_token(self, seq_length=None):
        """Forward FLOPs of one layer per token: ``2 * layer_matmul_params + 4 s h``."""
        s = self.seq_length if seq_length is None else seq_length
        return 2.0 * self.layer_matmul_params + 4.0 * s * self.hidden

    def activation_bytes_per_token(self, capacity_factor: float = 1.0) -> float:
        """Bytes of activations one layer stores per token for the backward pass, excluding the
        attention-score term: Korthikanti et al. 2022 (section 4.1) count ``34 s b h`` for GPT;
        the same bookkeeping for grouped-query attention and a gated FFN gives
        ``(7 + 4 kv/h) h`` (attention) ``+ (3 + 2 m' f/h) h`` (FFN) ``+ 4 h`` (norms), with
        ``m' = 3`` (gate, up, product) for SwiGLU and 2 (GeLU input and output) for GeLU.
        For GPT (kv = h, f = 4h) this is exactly 34 h. Without dropout the two 1-byte masks
        (``h`` each, after attention and after the FFN) are not stored: ``32 h`` for GPT.
        A MoE layer stores, for each of the ``top_k`` routed copies of a token (padded by
        ``capacity_factor``), its dispatched input (2h) and its expert's FFN activations, plus the
        shared experts' (averaged over the dense and MoE layers)."""
        h = self.hidden
        mask = 1 if self.dropout else 0
        attention = (6 + mask) * h + 4 * self.kv_dim
        mprime = 3 if self.gated_ffn else 2
        mlp = (2 + mask) * h + 2 * mprime * self.ffn
        if self.experts:  # routed tokens: expert FFN activations k times, the dispatched input
            moe = (2 + mask) * h + capacity_factor * self.top_k * (2 * h + 2 * mprime * self.expert_ffn) \
                + self.shared_experts * 2 * mprime * self.expert_ffn
            mlp = (self.dense_layers * mlp + self.moe_layers * moe) / self.layers
        return float(attention + mlp + 4 * h)

    @property
    def score_bytes_per_element(self) -> float:
        """Bytes an unfused attention stores per score element for backward: softmax output (2),
        dropout mask (1) and dropout output (2), Korthikanti's ``5 a s / h``; 2 without dropout."""
        return 5.0 if self.dropout else 2.0

    def with_(self, **changes) -> "Transformer":
        """A copy with some fields changed (``gpt3.with_(seq_length=4096)``)."""
        from dataclasses import replace

        return replace(self, **changes)


_FIELDS = {f.name for f in fields(Transformer)} - {"name", "source"}


@lru_cache(maxsize=1)
def _presets() -> dict:
    path = data_dir() / "models.yaml"
    doc = load_yaml(path)
    sources = doc.get("sources", {})
    out = {}
    for name, entry in doc["models"].items():
        entry = dict(entry)
        src = entry.pop("source", "")
        entry.pop("description", None)
        if isinstance(src, str) and src.startswith("@"):
            src = sources[src[1:]]
        unknown = set(entry) - _FIELDS
        if unknown:
            raise HpclabError(f"{path}: model {name!r}: unknown field {sorted(unknown, key=str)[0]!r}; "
                              f"allowed: {', '.join(sorted(_FIELDS))}")
        out[name] = Transformer(name=name, source=src, **entry)
    return out


def model_names() -> list[str]:
    """Names of the shipped presets (``data/models.yaml``)."""
    return list(_presets())


def transformer(name_or_model) -> Transformer:
    """Return a :class:`Transformer`: pass one through or look a preset up by name.

    Raises KeyError listing the known presets for an unknown name.
    """
    if isinstance(name_or_model, Transformer):
        return name_or_model
    presets = _presets()
    if name_or_model not in presets:
        from hpclab.catalog import UnknownNameError

        raise UnknownNameError(f"unknown model {name_or_model!r}; known: {', '.join(presets)}")
    return presets[name_or_model]
