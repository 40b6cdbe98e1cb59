"""Seconds per training epoch and per evaluation: our backbone vs MMRec's implementation, in one run.

Both train on the same data (ours from a dataset folder, MMRec's from its `guider data export`
copy) with the same hyper-parameters and threads; their epochs alternate after one warm-up
epoch each, and the medians of the timed epochs are compared. An epoch is estimated as
(per-epoch hook, e.g. graph resampling and our vectorised negative sampling) + first batch
+ (batches - 1) x the median of the other timed batches, the same formula on both sides.
An evaluation is one full-ranking pass over the valid split, timed whole on both sides
(MMRec: Trainer.evaluate on its EvalDataLoader, top 50; ours: Trainer.evaluate_model).

MMRec is not part of this project: point --mmrec at a checkout of enoche/MMRec outside it
(with torch_geometric, scikit-learn and lmdb importable, e.g. installed into a folder given
by --deps). Five workarounds make MMRec's code run on CPU with today's libraries:
`Tensor.cuda` becomes a no-op (GRCN and MGCN call .cuda() unconditionally), DualGNN's and
DRAGON's `result_embed` parameter is dropped (it cannot be assigned on CPU), a missing
`torch_scatter` is replaced by PyG's scatter (SMORE calls scatter_add), and scipy's removed
`dok_matrix._update` (LGMRec's adjacency) is restored through the public API, and NumPy's
removed `np.float` alias (MMRec's NDCG) is restored as `float`. DualGNN and
DRAGON read `user_graph_dict.npy` (MMRec's preprocessing script makes it) and DAMRS reads
`item_graph_dict_2.npy` (the DA-MRS authors' build_iib_graph.py): `--write-graph-files`
writes both into MMRec's data folder from the train split, with the lists our backbones
build in-package (users by shared items, top 200; items sharing >= 2 users, top 2), in the
pickled-dict format MMRec loads.

    guider data export DATA --out MMREC/data/NAME   # and MMREC/src/configs/dataset/NAME.yaml
    python benchmarks/bench_vs_mmrec.py --mmrec MMREC --deps PYG_DIR --data DATA --dataset NAME
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

# our name -> (MMRec's model name, MMRec config keys set to our defaults)
MODELS = {
    "mmgcn": ("MMGCN", {"reg_weight": 0.0}),
    "grcn": ("GRCN", {"reg_weight": 0.1}),
    "dualgnn": ("DualGNN", {"reg_weight": 0.1, "aggr_mode": "add"}),
    "lattice": ("LATTICE", {"reg_weight": 0.0}),
    "slmrec": ("SLMRec", {"reg": 1e-4, "ssl_alpha": 0.01, "ssl_temp": 0.1}),
    "dragon": ("DRAGON", {"reg_weight": 0.001, "aggr_mode": "add"}),
    "mgcn": ("MGCN", {"reg_weight": 1e-4, "cl_loss": 0.001}),
    "lgmrec": ("LGMRec", {"cl_weight": 1e-4, "reg_weight": 1e-6}),
    "smore": (
        "SMORE",
        {"n_ui_layers": 4, "image_knn_k": 40, "text_knn_k": 15, "reg_weight": 1e-4, "dropout_rate": 0.1},
    ),
    "damrs": ("DAMRS", {"n_ui_layers": 2, "n_mm_layers": 1, "kl_weight": 1.0, "neighbor_weight": 0.001}),
}


def patch_scipy_dok() -> None:
    """scipy >= 1.12 has no dok_matrix._update, which MMRec's get_norm_adj_mat calls (LGMRec,
    FREEDOM, BM3): the same assignment through the public API."""
    import scipy.sparse as sp

    if hasattr(sp.dok_matrix, "_update"):
        return

    def _update(self, entries):
        keys = np.array(list(entries.keys()))
        self[keys[:, 0], keys[:, 1]] = np.array(list(entries.values()), dtype=self.dtype)

    sp.dok_matrix._update = _update


def write_graph_files(folder: Path, train) -> None:
    """MMRec's user_graph_dict.npy and DAMRS's item_graph_dict_2.npy for the train split
    (scipy CSR [users, items]): {user: [neighbours, shared-item counts]} (most shared first,
    at most 200) and {item: [neighbours, weights]} (top 2 items sharing >= 2 users). A
    benchmark fixture for MMRec's loaders (which unpickle them), never read by this project."""
    from guider.models.damrs_parts import behaviour_neighbours
    from guider.models.user_graph import PREPROCESS_TOP, neighbour_lists

    index, count, n = neighbour_lists(train, PREPROCESS_TOP)
    users = {u: [index[u, : n[u]].tolist(), count[u, : n[u]].tolist()] for u in range(train.shape[0])}
    # np.save pickles a 0-d object array: MMRec's format (its loader unpickles it; we never read it)
    np.save(folder / "user_graph_dict.npy", np.array(users, dtype=object))
    rows, cols = behaviour_neighbours(train, topk=2, min_users=2)
    items: dict[int, list[list[int]]] = {}
    for i, j in zip(rows.tolist(), cols.tolist()):
        items.setdefault(i, [[], []])
        items[i][0].append(j)
        items[i][1].append(1)
    np.save(folder / "item_graph_dict_2.npy", np.array(items, dtype=object))
    print(f"wrote {folder}/user_graph_dict.npy and item_graph_dict_2.npy", flush=True)


def import_mmrec(src: Path, deps: Path | None):
    """MMRec's modules, importable from its src/ (which it expects as the working folder)."""
    sys.path[:0] = [str(p) for p in (deps, src) if p is not None]
    try:
        import torch_scatter  # noqa: F401
    except ImportError:  # SLMRec only imports it; SMORE's kNN Laplacian calls scatter_add
        from torch_geometric.utils import scatter

        def scatter_add(src, index, dim=0, dim_size=None):
            return scatter(src, index, dim, dim_size=dim_size, reduce="sum")

        sys.modules["torch_scatter"] = types.SimpleNamespace(scatter=scatter, scatter_add=scatter_add)
    patch_scipy_dok()
    np.float = float  # removed in NumPy 1.24; MMRec's utils/metrics.py ndcg_ uses it
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # a CPU run
    os.chdir(src)
    from utils.configurator import Config
    from utils.dataloader import EvalDataLoader, TrainDataLoader
    from utils.dataset import RecDataset
    from utils.utils import get_model, get_trainer, init_seed

    return types.SimpleNamespace(
        Config=Config, TrainDataLoader=TrainDataLoader, EvalDataLoader=EvalDataLoader, RecDataset=RecDataset,
        get_model=get_model, get_trainer=get_trainer, init_seed=init_seed,
    )  # fmt: skip


def mmrec_setup(mm, name: str, dataset: str, extra: dict):
    config = mm.Config(name, dataset, {"use_gpu": False, "seed": 999, "learning_rate": 0.001, **extra})
    for key in config["hyper_parameters"]:  # as quick_start does for each grid point: here the first
        if isinstance(config[key], list):
            config[key] = config[key][0]
    mm.init_seed(999)
    train, valid, _ = mm.RecDataset(config).split()
    str(train), str(valid)  # MMRec sets inter_num while describing a dataset (quick_start logs them)
    data = mm.TrainDataLoader(config, train, batch_size=config["train_batch_size"], shuffle=True)
    valid_data = mm.EvalDataLoader(config, valid, additional_dataset=train, batch_size=config["eval_batch_size"])
    data.pretrain_setup()
    model = mm.get_model(name)(config, data)
    model._parameters.pop("result_embed", None)  # MMRec's DualGNN cannot assign it on CPU otherwise
    return model, mm.get_trainer()(config, model), data, valid_data


def mmrec_eval(trainer, valid_data) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        trainer.evaluate(valid_data)
    return time.perf_counter() - started


def our_eval(trainer) -> float:
    started = time.perf_counter()
    trainer.evaluate_model("valid")
    return time.perf_counter() - started


def estimate(hook: float, steps: list[float], n_batches: int) -> float:
    return hook + steps[0] + (n_batches - 1) * statistics.median(steps[1:])


def mmrec_epoch(model, trainer, data, n_steps: int) -> float:
    """One epoch of MMRec's _train_epoch, timed on its first batches."""
    started = time.perf_counter()
    model.pre_epoch_processing()
    hook = time.perf_counter() - started
    model.train()
    steps, batches = [], iter(data)
    for _ in range(n_steps):
        started = time.perf_counter()
        interaction = next(batches)
        trainer.optimizer.zero_grad()
        interaction.clone()  # MMRec's _train_epoch keeps a copy of every batch
        loss = model.calculate_loss(interaction)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        loss.item()
        loss.backward()
        trainer.optimizer.step()
        steps.append(time.perf_counter() - started)
    return estimate(hook, steps, len(data))


def our_epoch(trainer, epoch: int, n_steps: int) -> float:
    """One epoch of our Trainer.run_epoch, timed on its first batches."""
    from guider.engine.trainer import seed_everything

    started = time.perf_counter()
    trainer._set_learning_rate(epoch)
    gen = seed_everything(trainer.config.seed, epoch)
    rng = np.random.default_rng([trainer.config.seed, epoch])
    trainer.model.train()
    trainer.model.on_epoch_start(epoch, gen)
    trainer.method.on_epoch_start(epoch, gen)
    order = rng.permutation(len(trainer.inputs.train_users))
    users = trainer.inputs.train_users[order]
    negs = trainer.sampler.sample(users, rng) if trainer.method.needs_negatives else None
    hook = time.perf_counter() - started
    size, steps = trainer.tcfg.batch_size, []
    for index in range(n_steps):
        started = time.perf_counter()
        rows = slice(index * size, (index + 1) * size)
        trainer._step(trainer._batch(order[rows], users[rows], None if negs is None else negs[rows]), epoch, index)
        steps.append(time.perf_counter() - started)
    return estimate(hook, steps, -(-len(order) // size))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="a checkout of enoche/MMRec (outside this project)")
    parser.add_argument("--deps", type=Path, help="folder holding MMRec's extra packages (torch_geometric, ...)")
    parser.add_argument("--data", type=Path, required=True, help="our dataset folder")
    parser.add_argument("--dataset", required=True, help="its name in MMRec (data/<name>, configs/dataset/<name>.yaml)")
    parser.add_argument("--backbones", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=6, help="timed batches per epoch (>= 2)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--write-graph-files",
        action="store_true",
        help="write MMRec's user/item graph dicts into its data folder first",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from guider.config import resolve_run_config
    from guider.data import TRAIN, load_dataset
    from guider.engine.trainer import Trainer

    ds = load_dataset(args.data.resolve())
    if args.write_graph_files:
        write_graph_files((args.mmrec / "data" / args.dataset).resolve(), ds.matrix(TRAIN))
    mm = import_mmrec((args.mmrec / "src").resolve(), args.deps.resolve() if args.deps else None)
    print(f"{ds.name}: {ds.statistics()}; {args.threads} threads; {args.steps} timed batches per epoch", flush=True)
    head = ("ours s/ep", "MMRec s/ep", "MMRec/ours", "ours s/eval", "MMRec s/eval", "MMRec/ours")
    print(f"{'backbone':10s} " + " ".join(f"{h:>12s}" for h in head), flush=True)
    for name in args.backbones:
        mm_name, extra = MODELS[name]
        with tempfile.TemporaryDirectory() as tmp:
            ours = Trainer(ds, Path(tmp), resolve_run_config(name), torch.device("cpu"), progress=False)
            model, trainer, data, valid_data = mmrec_setup(mm, mm_name, args.dataset, extra)
            timed = [
                (our_epoch(ours, epoch, args.steps), mmrec_epoch(model, trainer, data, args.steps))
                for epoch in range(args.epochs + 1)
            ][1:]  # epoch 0 warms both up
            evals = [(our_eval(ours), mmrec_eval(trainer, valid_data)) for _ in range(2)][1:]
        a, b = statistics.median(t[0] for t in timed), statistics.median(t[1] for t in timed)
        c, d = statistics.median(t[0] for t in evals), statistics.median(t[1] for t in evals)
        print(f"{name:10s} {a:12.2f} {b:12.2f} {b / a:12.2f} {c:12.2f} {d:12.2f} {d / c:12.2f}", flush=True)


if __name__ == "__main__":
    main()
