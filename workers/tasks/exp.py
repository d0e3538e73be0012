"""EXP and EXP-classify (Abboud et al. 2021): SAT/UNSAT formula graphs that 1-WL cannot tell apart.

A formula is drawn as a graph: one node per clause (feature 0), one per literal x and ¬x (feature 1),
clause–literal edges and a negation edge x—¬x. Each pair shares a random planar base formula that is
satisfiable (a connected planar bipartite clause–variable graph with random literal polarities) and
adds a separate core over new variables y_0..y_{L-1}, L in {4, 6, 8}: bridge clauses force
y_i != y_{L-1-i}; the UNSAT core adds one implication cycle y_0 -> y_1 -> ... -> y_0 (all equal, a
contradiction), the SAT core two cycles of length L/2 (the halves may differ). In both cores every
literal has degree 3 and every clause degree 2, so the two graphs of a pair are 1-WL-equivalent, but
one is satisfiable and the other is not. Graphs 2k (SAT, label 1) and 2k+1 (UNSAT, label 0) form a
pair; every graph is padded to 64 nodes. Satisfiability is checked with pycosat while generating.

Node order. A formula's graph is built as "clauses, then x_1..x_V, then ¬x_1..¬x_V", so the SAT and
UNSAT cores would sit at systematically different indices and the label could be read off the
node order by any model that is not exactly invariant (a logistic regression on the flattened
adjacency in that order separates the published EXP file too). Every stored graph therefore has
its real nodes relabelled by its own seeded random permutation (``relabel``); padding stays last.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import networkx as nx
import numpy as np
import pycosat
import torch
import torch.nn.functional as F

from workers.checks import is_int
from workers.tasks.base import Task, require
from workers.tasks.separation import SeparationTask

Clause = tuple[int, ...]  # DIMACS literals: +k / -k for variable k >= 1
Graph = tuple[np.ndarray, np.ndarray]  # adjacency (n, n) uint8, literal indicator (n,) uint8

MIN_NODES, MAX_NODES = 32, 64
BASE_SIZES = ((12, 500), (15, 100))  # (clause + variable nodes of the base graph, pairs), as in EXP
CHAIN_LENGTHS = (4, 6, 8)
MAX_CLAUSE_WIDTH = 5
MAX_EXTRA_EDGES = 3  # edges added at random beyond the two per variable
GRAPH_SPLITS = {"val": slice(0, 200), "test": slice(200, 400), "train": slice(400, 1200)}  # graphs


def formula_graph(variables: int, clauses: list[Clause]) -> Graph:
    """Adjacency (n, n) uint8 and literal indicator (n,) of a formula's graph.

    Nodes: the clauses in order, then literals x_1..x_V, then ¬x_1..¬x_V.
    """
    size = len(clauses) + 2 * variables
    adjacency = np.zeros((size, size), dtype=np.uint8)  # (n, n)

    def literal_node(literal: int) -> int:
        return len(clauses) + abs(literal) - 1 + (variables if literal < 0 else 0)

    for index, clause in enumerate(clauses):
        for literal in clause:
            adjacency[index, literal_node(literal)] = adjacency[literal_node(literal), index] = 1
    for variable in range(1, variables + 1):
        positive, negative = literal_node(variable), literal_node(-variable)
        adjacency[positive, negative] = adjacency[negative, positive] = 1
    literal = np.zeros(size, dtype=np.uint8)  # (n,)
    literal[len(clauses) :] = 1
    return adjacency, literal


def random_base_formula(rng: np.random.Generator, size: int) -> tuple[int, list[Clause]] | None:
    """A random planar base formula on ``size`` clause + variable nodes, or None when a draw fails.

    Clauses are the smaller side; every variable joins two random clauses (plus a few extra edges),
    every clause must end up with 2..5 literals, the clause–variable graph connected, and the
    formula graph with negation edges planar. Repeated clauses are dropped.
    """
    clause_count = int(rng.integers(size // 2 - 2, size // 2 + 1))
    variables = size - clause_count
    incidence = np.zeros((clause_count, variables), dtype=bool)  # (C, V)
    for variable in range(variables):
        open_clauses = np.flatnonzero(incidence.sum(axis=1) < MAX_CLAUSE_WIDTH)
        if open_clauses.size < 2:
            return None
        incidence[rng.choice(open_clauses, 2, replace=False), variable] = True
    for _ in range(int(rng.integers(0, MAX_EXTRA_EDGES + 1))):
        free = np.argwhere(~incidence & (incidence.sum(axis=1, keepdims=True) < MAX_CLAUSE_WIDTH))
        if len(free) == 0:
            break
        clause, variable = free[rng.integers(len(free))]
        incidence[clause, variable] = True
    if (incidence.sum(axis=1) < 2).any():
        return None
    bipartite = nx.Graph([(c, clause_count + v) for c, v in zip(*np.nonzero(incidence))])
    if bipartite.number_of_nodes() != size or not nx.is_connected(bipartite):
        return None
    signs = np.where(rng.random(incidence.shape) < 0.5, 1, -1)  # (C, V) literal polarities
    clauses: list[Clause] = []
    for row, sign in zip(incidence, signs):
        clause = tuple(int(sign[v]) * (int(v) + 1) for v in np.flatnonzero(row))
        if clause not in clauses:
            clauses.append(clause)
    adjacency, _ = formula_graph(variables, clauses)
    if not nx.check_planarity(nx.from_numpy_array(adjacency))[0]:
        return None
    return variables, clauses


def core_formulas(first_variable: int, length: int) -> tuple[list[Clause], list[Clause]]:
    """The (SAT, UNSAT) cores over variables first_variable .. first_variable + length - 1."""
    y = [first_variable + i for i in range(length)]
    half = length // 2
    bridges = [(y[i], y[length - 1 - i]) for i in range(half)]
    bridges += [(-y[i], -y[length - 1 - i]) for i in range(half)]
    one_cycle = [(-y[i], y[(i + 1) % length]) for i in range(length)]
    two_cycles = [(-y[i], y[(i + 1) % half]) for i in range(half)]  # forward over the first half
    two_cycles += [(-y[half + i], y[half + (i - 1) % half]) for i in range(half)]  # backward
    return bridges + two_cycles, bridges + one_cycle


def _random_pair(rng: np.random.Generator, base_size: int) -> tuple[Graph, Graph]:
    """The (SAT, UNSAT) graphs of one pair; redraws until valid."""
    while True:
        base = random_base_formula(rng, base_size)
        if base is None:
            continue
        variables, clauses = base
        length = CHAIN_LENGTHS[int(rng.integers(len(CHAIN_LENGTHS)))]
        sat_core, unsat_core = core_formulas(variables + 1, length)
        sat, unsat = clauses + sat_core, clauses + unsat_core
        total_variables = variables + length
        if not MIN_NODES <= len(sat) + 2 * total_variables <= MAX_NODES:
            continue
        if pycosat.solve(sat) == "UNSAT" or pycosat.solve(unsat) != "UNSAT":
            continue
        return formula_graph(total_variables, sat), formula_graph(total_variables, unsat)


def relabel(graph: Graph, rng: np.random.Generator) -> Graph:
    """The same graph with its nodes in a uniformly random order (node i moves to position perm[i])."""
    adjacency, literal = graph
    order = rng.permutation(len(literal))  # new position p holds old node order[p]
    return adjacency[np.ix_(order, order)], literal[order]


def exp_graphs(seed: int) -> dict[str, np.ndarray]:
    """All 1,200 EXP graphs, padded to 64 nodes: "adj", "x", "mask", "y" (SAT = 1, UNSAT = 0).

    Each graph's real nodes come in a random order drawn from its own stream of ``seed`` (see the
    module docstring: the construction order carries the label).
    """
    rng = np.random.default_rng(seed)
    order_rng = np.random.default_rng([seed, 1])  # separate stream: the structures stay those of the seed
    graphs = [
        relabel(graph, order_rng)
        for base_size, pairs in BASE_SIZES
        for _ in range(pairs)
        for graph in _random_pair(rng, base_size)
    ]
    count = len(graphs)
    adjacency = np.zeros((count, MAX_NODES, MAX_NODES, 1), dtype=np.float32)  # (G, 64, 64, 1)
    features = np.zeros((count, MAX_NODES, 1), dtype=np.float32)  # (G, 64, 1)
    mask = np.zeros((count, MAX_NODES), dtype=bool)  # (G, 64)
    for index, (matrix, literal) in enumerate(graphs):
        size = len(literal)
        adjacency[index, :size, :size, 0] = matrix
        features[index, :size, 0] = literal
        mask[index, :size] = True
    labels = (np.arange(count) % 2 == 0).astype(np.float32)  # (G,) 1, 0, 1, 0, ...
    return {"adj": adjacency, "x": features, "mask": mask, "y": labels}


class _ExpGraphs:
    """Parameters, validation and layout shared by EXP and EXP-classify."""

    version: ClassVar[int] = 2  # 2: nodes relabelled at random (version 1 leaked the label via node order)
    defaults: ClassVar[dict[str, Any]] = {"seed": 0}
    input_kinds: ClassVar[dict[str, str]] = {"adj": "pair", "x": "node"}
    target_kind: ClassVar[str] = "invariant"
    params: dict[str, Any]

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"adj": (MAX_NODES, MAX_NODES, 1), "x": (MAX_NODES, 1)}

    def validate(self) -> None:
        seed = self.params["seed"]
        require(is_int(seed) and seed >= 0, "seed", seed, "a non-negative integer")


class Exp(_ExpGraphs, SeparationTask):
    """EXP isomorphism: count the pairs (2k, 2k+1) that a freshly initialised model never separates."""

    name: ClassVar[str] = "exp"

    def generate(self) -> dict[str, np.ndarray]:
        return {f"test/{field}": value for field, value in exp_graphs(self.params["seed"]).items()}

    def pairs(self, size: int) -> torch.Tensor:
        first = torch.arange(0, size - 1, 2)
        return torch.stack([first, first + 1], dim=1)  # (size // 2, 2)


class ExpClassify(_ExpGraphs, Task):
    """EXP-classify: predict SAT (1) / UNSAT (0); val = graphs 0..199, test 200..399, train 400..1199."""

    name: ClassVar[str] = "exp_classify"
    metric: ClassVar[str] = "accuracy"
    mode: ClassVar[str] = "max"
    decides: ClassVar[bool] = True

    def output_shape(self) -> tuple[int, ...]:
        return (1,)

    def generate(self) -> dict[str, np.ndarray]:
        graphs = exp_graphs(self.params["seed"])
        return {
            f"{split}/{field}": value[rows]
            for split, rows in GRAPH_SPLITS.items()
            for field, value in graphs.items()
        }

    @staticmethod
    def _logits(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape not in (target.shape, (*target.shape, 1)):
            raise ValueError(f"exp_classify expects (B,) or (B, 1) logits for {tuple(target.shape)} "
                             f"targets; got {tuple(pred.shape)}")
        return pred.reshape(target.shape)  # (B,)

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        target = batch["y"].float()
        return F.binary_cross_entropy_with_logits(self._logits(pred, target), target)

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        target = batch["y"].float()
        predicted = (self._logits(pred, target) > 0).float()
        return {"accuracy": float((predicted == target).float().mean())}

    def decide(self, pred: torch.Tensor) -> torch.Tensor:
        """SAT (1) where the logit is positive, else UNSAT (0), as ``metrics`` scores it."""
        return (pred.reshape(pred.shape[0]) > 0).long()
