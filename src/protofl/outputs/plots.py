"""Plots of a comparison (matplotlib, ``pip install protofl[plot]``): accuracy per round,
final per-domain accuracy, and the learned feature space with FPL's prototypes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protofl.errors import ConfigError
from protofl.outputs.results import window_text


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ConfigError("plots need matplotlib: pip install 'protofl[plot]'.") from err
    return plt


def _colours(plt: Any, count: int) -> list[Any]:
    """Distinct colours for up to 20 series (tab10 repeats after ten)."""
    palette = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [palette(i % palette.N) for i in range(count)]


def accuracy_per_round(table: Mapping[str, Any], path: Path, meta: Mapping[str, Any]) -> None:
    """Mean accuracy per round for each algorithm: the mean over seeds, min-max shaded."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(9, 5.5))
    colours = _colours(plt, len(table["rows"]))
    for (algorithm, row), colour in zip(table["rows"].items(), colours, strict=True):
        curves = np.array(list(row["curves"].values()))  # [seeds, rounds]
        rounds = np.arange(1, curves.shape[1] + 1)
        style = "--" if algorithm.startswith("fpl-") else "-"
        axes.plot(rounds, curves.mean(axis=0), style, label=algorithm, color=colour, lw=1.6)
        axes.fill_between(rounds, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.12)
    axes.xaxis.get_major_locator().set_params(integer=True)
    # at least a 20-point window, so a wiggle of half a point does not look like a gap
    low, high = axes.get_ylim()
    if high - low < 20:
        centre = (high + low) / 2
        axes.set_ylim(max(0.0, centre - 10), min(100.0, max(0.0, centre - 10) + 20))
    axes.set_xlabel("round")
    axes.set_ylabel("mean accuracy over domains (%)")
    axes.set_title(f"{meta['benchmark']}: accuracy per round (mean over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def per_domain(table: Mapping[str, Any], path: Path, meta: Mapping[str, Any]) -> None:
    """Grouped bars: each domain's accuracy (last-5-round mean) per algorithm, std as error."""
    plt = _pyplot()
    columns = [*table["domains"], "AVG"]
    algorithms = list(table["rows"])
    width = 0.8 / len(algorithms)
    figure, axes = plt.subplots(figsize=(min(16, 4 + 0.25 * len(columns) * len(algorithms)), 5))
    positions = np.arange(len(columns))
    colours = _colours(plt, len(algorithms))
    for index, algorithm in enumerate(algorithms):
        row = table["rows"][algorithm]
        means = [row[c]["mean"] for c in columns]
        spreads = [row[c]["std"] if row[c]["n"] > 1 else 0.0 for c in columns]
        offset = (index - (len(algorithms) - 1) / 2) * width
        seeds = len(row["curves"])  # per row: rows may differ in seeds
        axes.bar(
            positions + offset,
            means,
            width,
            yerr=spreads if seeds > 1 else None,
            label=f"{algorithm} ({seeds} seed{'s' if seeds > 1 else ''})",
            capsize=2,
            color=colours[index],
        )
    axes.set_xticks(positions, columns)
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"{meta['benchmark']}: per-domain accuracy\n({_window(table)})", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _window(table: Mapping[str, Any]) -> str:
    """What each bar averages, as it was for these runs (a 2-round run says so); the seeds
    are counted per row in the legend, and a one-seed row has no error bar."""
    rounds = min(len(c) for row in table["rows"].values() for c in row["curves"].values())
    counts = {len(row["curves"]) for row in table["rows"].values()}
    if counts == {1}:
        spread = "one seed per row"
    elif len(counts) == 1:
        spread = f"mean ± std over {counts.pop()} seeds"
    else:
        spread = "mean over each row's seeds (legend), ± std where it has more than one"
    return f"mean of the {window_text(rounds)}, {spread}"


def feature_space(run_dir: Path, path: Path, per_domain_points: int = 150) -> None:
    """t-SNE of the final model's test features (colour: class, marker: domain) together
    with FPL's cluster prototypes (crosses) and unbiased prototypes (stars), as in the
    paper's figures. Features and prototypes are L2-normalised first: FPL compares them
    by cosine."""
    from sklearn.manifold import TSNE

    from protofl.algorithms.prototypes import class_means
    from protofl.builders import prepare
    from protofl.config import config_from_dict
    from protofl.outputs.checkpoint import load_checkpoint

    config = config_from_dict(json.loads((run_dir / "config.json").read_text()))
    simulation, _ = prepare(config)
    load_checkpoint(run_dir, simulation)
    features, labels, domain_index, names = _test_features(simulation, per_domain_points)
    clusters = simulation.state.prototypes
    if clusters is None or not len(clusters):
        return
    unbiased, has = class_means(clusters.to("cpu"), simulation.federation.num_classes)
    points = torch.cat([features, clusters.vectors.cpu(), unbiased[has]])
    normalised = torch.nn.functional.normalize(points, dim=1).numpy()
    embedded = TSNE(2, init="pca", perplexity=30, random_state=0).fit_transform(normalised)
    domains = (domain_index, names)
    _draw_features(path, embedded, labels, domains, clusters.labels.cpu(), has, config.benchmark)


def _test_features(
    simulation: Any, per_domain_points: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    model, precision = simulation.model.eval(), simulation.precision
    features, labels, domains = [], [], []
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for index, test_set in enumerate(simulation.federation.test_sets):
            count = len(test_set.data)
            pick = torch.randperm(count, generator=generator)[:per_domain_points]
            pick = pick.to(test_set.data.labels.device)
            inputs = precision.prepare_input(test_set.transform.eval(test_set.data.inputs[pick]))
            with precision.autocast():
                features.append(model.features(inputs).float().cpu())
            labels.append(test_set.data.labels[pick].cpu())
            domains.append(torch.full((len(pick),), index))
    names = [t.domain for t in simulation.federation.test_sets]
    return torch.cat(features), torch.cat(labels), torch.cat(domains), names


def _draw_features(
    path: Path,
    embedded: np.ndarray,
    labels: torch.Tensor,
    domains: tuple[torch.Tensor, list[str]],
    cluster_labels: torch.Tensor,
    has: torch.Tensor,
    benchmark: str,
) -> None:
    plt = _pyplot()
    domain_index, names = domains
    count, clusters = len(labels), len(cluster_labels)
    colours = plt.get_cmap("tab10")
    markers = ["o", "s", "^", "D", "v", "P"]
    figure, axes = plt.subplots(figsize=(8, 7))
    for index, name in enumerate(names):
        mask = (domain_index == index).numpy()
        axes.scatter(
            embedded[:count][mask, 0],
            embedded[:count][mask, 1],
            s=10,
            alpha=0.55,
            c=[colours(int(c) % 10) for c in labels[mask]],
            marker=markers[index % len(markers)],
        )
        # the legend's key for a domain is its marker, in grey: colour means class
        axes.scatter([], [], s=20, c="grey", marker=markers[index % len(markers)], label=name)
    cluster_points = embedded[count : count + clusters]
    cluster_artist = axes.scatter(
        cluster_points[:, 0],
        cluster_points[:, 1],
        s=140,
        marker="X",
        linewidths=1.2,
        c=[colours(int(c) % 10) for c in cluster_labels],
        edgecolors="black",
        label="cluster prototypes",
    )
    unbiased_points = embedded[count + clusters :]
    present = torch.nonzero(has).flatten()
    axes.scatter(
        unbiased_points[:, 0],
        unbiased_points[:, 1],
        s=320,
        marker="*",
        c=[colours(int(c) % 10) for c in present],
        edgecolors="black",
        label="unbiased prototypes",
        zorder=2,
    )
    cluster_artist.set_zorder(3)  # cluster prototypes above the stars, not hidden
    for cls in sorted({int(c) for c in labels}):  # colour -> class key
        axes.scatter([], [], s=30, c=[colours(cls % 10)], marker="s", label=f"class {cls}")
    axes.set_title(f"{benchmark}: FPL's feature space (t-SNE; colour = class)")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), markerscale=0.8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def client_classes(counts: Mapping[str, list[int]], path: Path, title: str) -> None:
    """Stacked bars: every client's samples per class (what label skew did to each)."""
    plt = _pyplot()
    clients = list(counts)
    table = np.array([counts[c] for c in clients])  # [clients, classes]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.5 * len(clients) + 2), 4.5))
    bottom = np.zeros(len(clients))
    for cls, colour in zip(range(table.shape[1]), _colours(plt, table.shape[1]), strict=True):
        axes.bar(clients, table[:, cls], bottom=bottom, color=colour, label=f"class {cls}")
        bottom += table[:, cls]
    axes.set_ylabel("training samples")
    axes.set_title(title)
    axes.tick_params(axis="x", rotation=60)
    axes.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
