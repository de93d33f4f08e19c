"""A small [CLS] sentiment classifier built from stock ``nn.TransformerEncoder`` layers.

`SentimentClassifier` is deliberately ordinary: token embedding plus a learned
positional embedding, a ``[CLS]`` token prepended to every sentence, a stock
``nn.TransformerEncoder`` (``batch_first=True``) and a linear read-out of the
``[CLS]`` position. Nothing in it exposes attention weights, which is the point of
walkthrough 4: :func:`attnlens.capture_attention` gets them from the unmodified
model.

`train_classifier` fits it to the data of :mod:`attnlens.datasets` in a few seconds
on a laptop CPU, deterministically for a given seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from attnlens.datasets import SentimentDataset, Vocab, encode_batch, sentiment_vocab

__all__ = ["SentimentClassifier", "TrainingResult", "evaluate_accuracy", "train_classifier"]


class SentimentClassifier(nn.Module):
    """Transformer-encoder text classifier reading its prediction from ``[CLS]``.

    Parameters
    ----------
    vocab_size : int
        Number of token ids (``len(vocab)``).
    d_model : int, default 32
        Embedding size E.
    nhead : int, default 4
        Heads H per layer (E must be divisible by H).
    num_layers : int, default 2
        Encoder layers.
    dim_feedforward : int, default 64
        Hidden size of each layer's feed-forward block.
    dropout : float, default 0.0
        Dropout of the encoder layers.
    max_len : int, default 32
        Longest input S accepted (the ``[CLS]`` position comes on top).
    num_classes : int, default 2
    cls_index : int, default 1
        Id of ``[CLS]`` (`attnlens.datasets.Vocab.cls_index`).
    pad_index : int, default 0
        Id of ``[PAD]``.
    norm_first : bool, default False
        Pre-norm (True) or post-norm (False, the paper's) encoder layers.
    enable_nested_tensor : bool, default False
        Passed to ``nn.TransformerEncoder`` (ignored with ``norm_first``). Off by default:
        when on, an eval-mode forward with a padding mask packs the batch into a
        prototype nested tensor, and torch warns about it (``UserWarning: The PyTorch
        API of nested tensors is in prototype stage``). The layers' fused fast path is
        taken in eval mode either way.
    positions : bool, default True
        Add the learned positional embedding. Without it the model cannot tell the order
        of the tokens: permuting them changes its logits only by rounding.

    Attributes
    ----------
    embedding : nn.Embedding
        Token embedding, (vocab_size, E).
    position : nn.Embedding or None
        Learned positional embedding, (max_len + 1, E); None with ``positions=False``.
    encoder : nn.TransformerEncoder
        Stock encoder; its attention modules are ``encoder.layers.<k>.self_attn``.
    head : nn.Linear
        Read-out of the ``[CLS]`` output, E -> num_classes.

    Examples
    --------
    >>> import torch
    >>> from attnlens.classifier import SentimentClassifier
    >>> model = SentimentClassifier(vocab_size=100)
    >>> tokens = torch.tensor([[5, 6, 7], [8, 9, 0]])  # (N, S)
    >>> mask = tokens == 0  # key_padding_mask, True = padding
    >>> model(tokens, mask).shape  # (N, num_classes)
    torch.Size([2, 2])
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
        max_len: int = 32,
        num_classes: int = 2,
        cls_index: int = 1,
        pad_index: int = 0,
        norm_first: bool = False,
        enable_nested_tensor: bool = False,
        positions: bool = True,
    ) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(
                f"d_model: expected a multiple of nhead = {nhead}, got d_model = {d_model}"
            )
        if not 0 <= cls_index < vocab_size:
            raise ValueError(f"cls_index: expected an id in [0, {vocab_size}), got {cls_index}")
        self.cls_index = cls_index
        self.pad_index = pad_index
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_index)
        self.position = nn.Embedding(max_len + 1, d_model) if positions else None
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            batch_first=True,
            norm_first=norm_first,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, enable_nested_tensor=enable_nested_tensor and not norm_first
        )
        self.head = nn.Linear(d_model, num_classes)
        # Small positions at the start: content, not absolute position, drives the early
        # updates, which makes the model generalise from a few thousand sentences.
        if self.position is not None:
            nn.init.normal_(self.position.weight, std=0.1)

    def forward(
        self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Classify a batch of id sequences.

        Parameters
        ----------
        tokens : Tensor of shape (N, S), int64
            Token ids without ``[CLS]``, right-padded.
        key_padding_mask : Tensor of shape (N, S), bool, optional
            True at padding (the ``nn.MultiheadAttention`` convention).

        Returns
        -------
        Tensor of shape (N, num_classes)
            Logits.

        Notes
        -----
        The encoder sees S + 1 positions: ``[CLS]`` at position 0, then the tokens.
        Attention weights captured from it are (N, H, S + 1, S + 1), row 0 being
        ``[CLS]``.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens: expected shape (N, S), got {tuple(tokens.shape)}")
        n, s = tokens.shape
        if s > self.max_len:
            raise ValueError(f"tokens: expected at most max_len = {self.max_len} ids, got S = {s}")
        if key_padding_mask is not None:
            if key_padding_mask.shape != tokens.shape:
                raise ValueError(
                    f"key_padding_mask: expected shape (N, S) = {tuple(tokens.shape)}, "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            if key_padding_mask.dtype != torch.bool:
                raise TypeError(
                    f"key_padding_mask: expected dtype torch.bool, got {key_padding_mask.dtype}"
                )
        cls = torch.full((n, 1), self.cls_index, dtype=tokens.dtype, device=tokens.device)
        ids = torch.cat([cls, tokens], dim=1)  # (N, S + 1)
        x = self.embedding(ids)  # (N, S + 1, E)
        if self.position is not None:
            x = x + self.position(torch.arange(s + 1, device=tokens.device))  # (N, S + 1, E)
        mask = None
        if key_padding_mask is not None:
            keep_cls = torch.zeros((n, 1), dtype=torch.bool, device=tokens.device)
            mask = torch.cat([keep_cls, key_padding_mask], dim=1)  # (N, S + 1)
        hidden = self.encoder(x, src_key_padding_mask=mask)  # (N, S + 1, E)
        logits: torch.Tensor = self.head(hidden[:, 0])  # (N, num_classes)
        return logits


@dataclass
class TrainingResult:
    """What `train_classifier` returns.

    Attributes
    ----------
    model : SentimentClassifier
        The trained model, in eval mode.
    vocab : Vocab
        The vocabulary used to encode the data.
    losses : list of float
        Mean training loss of each epoch.
    train_accuracy : float
        Accuracy on the training data after training.
    test_accuracy : float or None
        Accuracy on the held-out data, if given.
    seconds : float
        Wall-clock training time.
    """

    model: SentimentClassifier
    vocab: Vocab
    losses: list[float] = field(default_factory=list)
    train_accuracy: float = 0.0
    test_accuracy: float | None = None
    seconds: float = 0.0


@torch.no_grad()
def evaluate_accuracy(
    model: SentimentClassifier, vocab: Vocab, dataset: SentimentDataset, *, batch_size: int = 512
) -> float:
    """Share of ``dataset`` that ``model`` classifies correctly.

    Parameters
    ----------
    model : SentimentClassifier
    vocab : Vocab
    dataset : SentimentDataset
    batch_size : int, default 512

    Returns
    -------
    float
        Accuracy in [0, 1]. The model's train/eval mode is restored afterwards.
    """
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one example, got none")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, len(dataset), batch_size):
            part = dataset[start : start + batch_size]
            ids, mask = encode_batch(vocab, part.tokens)  # (N, S), (N, S)
            logits = model(ids.to(device), mask.to(device))  # (N, C)
            correct += int((logits.argmax(-1).cpu() == part.labels).sum())
    finally:
        model.train(was_training)
    return correct / len(dataset)


def train_classifier(
    train: SentimentDataset,
    test: SentimentDataset | None = None,
    *,
    vocab: Vocab | None = None,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 1e-2,
    warmup: float = 0.1,
    seed: int = 0,
    d_model: int = 32,
    nhead: int = 4,
    num_layers: int = 2,
    dim_feedforward: int = 64,
    dropout: float = 0.0,
    norm_first: bool = False,
    enable_nested_tensor: bool = False,
    positions: bool = True,
    device: str | torch.device = "cpu",
) -> TrainingResult:
    """Train a `SentimentClassifier` with Adam and cross-entropy.

    Deterministic for a given seed on a given machine: the initial weights, the
    batch order and dropout come from ``seed`` inside :func:`torch.random.fork_rng`,
    so the global random state is left as it was.

    Parameters
    ----------
    train : SentimentDataset
        Training data (from `attnlens.datasets.make_sentiment_dataset`).
    test : SentimentDataset, optional
        Held-out data, scored after training.
    vocab : Vocab, optional
        Default: `attnlens.datasets.sentiment_vocab` (every generated token).
    epochs : int, default 8
    batch_size : int, default 64
    lr : float, default 1e-2
        Peak Adam learning rate of the one-cycle schedule.
    warmup : float, default 0.1
        Share of the steps spent warming the learning rate up.
    seed : int, default 0
    d_model, nhead, num_layers, dim_feedforward, dropout, norm_first, enable_nested_tensor
        Passed to `SentimentClassifier`.
    positions : bool, default True
        Passed to `SentimentClassifier`: False trains a model that cannot see word order.
    device : str or torch.device, default "cpu"

    Returns
    -------
    TrainingResult
        The model (eval mode), vocabulary, losses, accuracies and time taken.

    Examples
    --------
    >>> from attnlens.classifier import train_classifier
    >>> from attnlens.datasets import make_sentiment_dataset
    >>> train, test = make_sentiment_dataset(2000, seed=0).split(0.2)
    >>> result = train_classifier(train, test, seed=0)  # a few seconds on a CPU
    >>> result.test_accuracy > 0.95
    True
    """
    if len(train) == 0:
        raise ValueError("train: expected at least one example, got none")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs, batch_size: expected positive ints, got {epochs}, {batch_size}")
    vocab = sentiment_vocab() if vocab is None else vocab
    device = torch.device(device)
    start_time = time.perf_counter()
    ids, mask = encode_batch(vocab, train.tokens)  # (N, S), (N, S)
    labels = train.labels
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        model = SentimentClassifier(
            len(vocab),
            d_model=d_model,
            nhead=nhead,
            num_layers=num_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            max_len=max(32, ids.shape[1]),
            cls_index=vocab.cls_index,
            pad_index=vocab.pad_index,
            norm_first=norm_first,
            enable_nested_tensor=enable_nested_tensor,
            positions=positions,
        ).to(device)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda")
        )
        steps_per_epoch = -(-len(train) // batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=warmup
        )
        loss_fn = nn.CrossEntropyLoss()
        shuffler = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=shuffler).to(device)
            total = 0.0
            for first in range(0, len(train), batch_size):
                batch = order[first : first + batch_size]
                width = int((~mask[batch]).sum(1).max())  # trim padding columns
                logits = model(ids[batch, :width], mask[batch, :width])  # (B, C)
                loss = loss_fn(logits, labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(batch)
            losses.append(total / len(train))
    model.eval()
    seconds = time.perf_counter() - start_time
    return TrainingResult(
        model=model,
        vocab=vocab,
        losses=losses,
        train_accuracy=evaluate_accuracy(model, vocab, train),
        test_accuracy=None if test is None else evaluate_accuracy(model, vocab, test),
        seconds=seconds,
    )
