import torch

from contrastive_det.evaluation import KNNEvaluator, knn_predict


def test_weighted_vote_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    bank_labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    # k=2 neighbours: sims 1.0 (label 0) and 0.8 (label 1); weights exp(sim/t)
    assert knn_predict(query, bank, bank_labels, 2, k=2, t=0.1).tolist() == [0]  # e^10 > e^8
    # k=3 adds label 1 with sim 0: e^8 + e^0 < e^10 still -> 0; with t=10 the two label-1 votes win
    assert knn_predict(query, bank, bank_labels, 2, k=3, t=0.1).tolist() == [0]
    assert knn_predict(query, bank, bank_labels, 2, k=3, t=10.0).tolist() == [
        1
    ]  # e^.1 < e^.08 + e^0


def test_evaluator_splits_bank_and_query():
    ev = KNNEvaluator(k=1, t=0.1)
    ev.reset()
    e = torch.eye(3)
    ev.process(
        [{"knn_role": "bank", "label": i} for i in range(3)],
        [{"embedding": e[i]} for i in range(3)],
    )
    ev.process(
        [{"knn_role": "query", "label": 2}, {"knn_role": "query", "label": 0}],
        [{"embedding": e[2]}, {"embedding": e[1]}],  # second query is nearest to class 1: wrong
    )
    assert ev.evaluate()["knn"]["top1"] == 50.0
