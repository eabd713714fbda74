"""Weighted kNN top-1 accuracy on embeddings (the monitor of contrastive pretraining)."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import torch

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm


def knn_predict(
    query: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    t: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """
    query: QxD and bank: BxD, L2-normalised; bank_labels: B. Each query's k most cosine-similar bank
    entries vote for their label with weight exp(sim / t). Returns Q predicted labels.
    """
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, query.shape[0], chunk):
        sims = query[start : start + chunk] @ bank.T  # QcxB
        top_sims, top_idx = sims.topk(k, dim=1)  # Qcxk
        votes = torch.zeros(sims.shape[0], num_classes, dtype=sims.dtype)
        votes.scatter_add_(1, bank_labels[top_idx], (top_sims / t).exp())  # QcxC
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


class KNNEvaluator(DatasetEvaluator):
    """
    Collects ``embedding`` outputs of inputs tagged ``knn_role`` "bank" or "query" (see
    ``build_knn_test_loader``) and reports ``{"knn": {"top1": %}}`` of the queries.
    """

    def __init__(self, k: int = 200, t: float = 0.1):
        self.k, self.t = k, t

    def reset(self) -> None:
        self._items = {"bank": [], "query": []}

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            self._items[inp["knn_role"]].append((out["embedding"].float().cpu(), int(inp["label"])))

    def evaluate(self) -> dict[str, dict[str, float]] | None:
        gathered = comm.gather(self._items, dst=0)
        if not comm.is_main_process():
            return None
        bank = list(itertools.chain(*(g["bank"] for g in gathered)))
        query = list(itertools.chain(*(g["query"] for g in gathered)))
        if not bank or not query:
            raise ValueError(
                f"kNN evaluation needs bank and query images, got {len(bank)} and {len(query)}"
            )
        bank_x, bank_y = torch.stack([e for e, _ in bank]), torch.tensor([y for _, y in bank])
        query_x, query_y = torch.stack([e for e, _ in query]), torch.tensor([y for _, y in query])
        num_classes = int(max(bank_y.max(), query_y.max())) + 1
        pred = knn_predict(query_x, bank_x, bank_y, num_classes, self.k, self.t)
        top1 = (pred == query_y).double().mean().item() * 100.0
        return OrderedDict(knn={"top1": top1})
