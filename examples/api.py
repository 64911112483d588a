"""The Python API end to end: a setting, a method's loss and its gradient, the evaluator.

    python examples/api.py

README's "From Python" snippet, runnable as written. `cb.example_targets` gives random Targets
in the setting's layout (candidates group by group, the ground-truth group first, padding at
the end of each group), and random scores stand in for the stage models' outputs: scores are
[T, B, N], one [B, N] slice per stage of the cascade, earliest first.
"""

import torch

import cascbench as cb

setting = cb.get_setting("recflow-2stage")  # T = 2 stages, N = 40 candidates, K = 10
targets = cb.example_targets(setting, batch_size=256, seed=0)  # label, group, mask: [B, N]
scores = torch.randn(setting.n_stages, 256, setting.n_candidates, requires_grad=True)

method = cb.get_method("lcron", setting, tau=50)  # a torch.nn.Module
out = method.loss(scores, targets)  # scores [T, B, N], targets: cb.Targets
out.total.backward()  # scores.grad: [T, B, N]
ev = cb.evaluate(scores, targets, setting, seed=0)  # protocol="release": the release's numbers

print(f"loss {out.total.item():.4f} with parts {', '.join(out.parts)}")
print(f"gradient of the scores: {list(scores.grad.shape)}")
print(f"joint_recall {ev.means['joint_recall']:.4f} over {ev.n_evaluated} requests")
print(f"ndcg/ranking per request: {list(ev.per_request['ndcg/ranking'].shape)}")
