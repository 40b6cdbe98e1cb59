"""The two kernels the training speed rests on, ours vs the plain PyTorch version, timed in
the same run on the LightGCN graph of a dataset:

- propagation (3 layers, forward + backward): `guider.models.graph.propagate_mean` (CSR,
  one-product backward, running sum) vs COO `torch.sparse.mm` with stacked layers;
- one Adam step over the user and item embeddings: `guider.engine.optim.adam` (fused) vs
  `torch.optim.Adam` (for-each);
- the candidate gather of GUIDER's KD scores (128 users x 50 candidates of the item table,
  forward + backward, deterministic algorithms as in a training run):
  `guider.models.base.gather_rows` (index_select) vs `table[index]` (accumulating index_put).

    python benchmarks/bench_kernels.py                    # synthetic baby-sized graph
    python benchmarks/bench_kernels.py --data DIR --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from guider.engine.optim import adam
from guider.engine.trainer import use_run_determinism
from guider.models.base import gather_rows
from guider.models.graph import propagate_mean, sym_norm_bipartite_adj, to_torch_sparse


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: a random graph of the baby preset's size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dim", type=int, default=64)
    return parser.parse_args(argv)


def train_matrix(data: Path | None) -> sp.csr_matrix:
    if data is not None:
        from guider.data import TRAIN, load_dataset

        return load_dataset(data).matrix(TRAIN)
    rng = np.random.default_rng(0)
    n_users, n_items, n_rows = 19_445, 7_050, 146_461  # the synthetic baby preset
    users, items = rng.integers(n_users, size=n_rows), rng.zipf(1.3, size=n_rows) % n_items
    return sp.csr_matrix((np.ones(n_rows, dtype=np.float32), (users, items)), shape=(n_users, n_items)).sign()


def naive_propagate(adj_coo: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    layers, x = [ego], ego
    for _ in range(n_layers):
        x = torch.sparse.mm(adj_coo, x)
        layers.append(x)
    return torch.stack(layers, dim=1).mean(dim=1)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    matrix = train_matrix(args.data)
    adj_scipy = sym_norm_bipartite_adj(matrix)
    csr = to_torch_sparse(adj_scipy, torch.device("cpu"))
    coo = csr.to_sparse_coo().coalesce()
    ego = torch.nn.Parameter(torch.randn(adj_scipy.shape[0], args.dim) * 0.1)
    weights = torch.randn_like(ego)

    def backward_through(propagate, adj):
        return lambda: (propagate(adj, ego, 3) * weights).sum().backward()

    ours = median_ms(backward_through(propagate_mean, csr), args.repeats)
    naive = median_ms(backward_through(naive_propagate, coo), args.repeats)
    print(f"graph {adj_scipy.shape[0]} nodes, {adj_scipy.nnz} edges, dim {args.dim}, {args.threads} threads")
    print(
        f"propagation fwd+bwd, 3 layers: ours (CSR) {ours:7.2f} ms   COO sparse.mm + stack {naive:7.2f} ms   "
        f"speed-up {naive / ours:5.2f}x"
    )

    ego.grad = torch.randn_like(ego)
    fused = median_ms(adam([ego], lr=1e-3).step, args.repeats)
    foreach = median_ms(torch.optim.Adam([ego], lr=1e-3).step, args.repeats)
    print(
        f"Adam step, {ego.numel():,} params:      ours (fused) {fused:7.2f} ms   for-each {foreach:7.2f} ms   "
        f"speed-up {foreach / fused:5.2f}x"
    )
    gather, indexing = gather_timings(matrix.shape[1], args)
    print(
        f"candidate gather fwd+bwd [128, 50]: ours (index_select) {gather:7.2f} ms   table[index] {indexing:7.2f} ms   "
        f"speed-up {indexing / gather:5.2f}x"
    )
    return 0


def gather_timings(n_items: int, args) -> tuple[float, float]:
    """(ms of gather_rows, ms of plain indexing): forward + backward of candidate scores."""
    use_run_determinism(torch.device("cpu"))  # the kernels a training run uses
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(torch.randn(n_items, args.dim, generator=gen))
    users = torch.nn.Parameter(torch.randn(128, args.dim, generator=gen))
    cands = torch.randint(n_items, (128, 50), generator=gen)
    upstream = torch.randn(128, 50, generator=gen)

    def scores(rows):
        return lambda: (torch.einsum("bd,bcd->bc", users, rows()) * upstream).sum().backward()

    ours = median_ms(scores(lambda: gather_rows(table, cands)), args.repeats)
    plain = median_ms(scores(lambda: table[cands]), args.repeats)
    return ours, plain


if __name__ == "__main__":
    sys.exit(main())
