"""``bench.png``: the run's figures in six panels (needs matplotlib; skipped without it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Panel = Callable[["Axes", dict[str, Any]], bool]
_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _e2e_backends(results: dict[str, Any]) -> dict[str, Any]:
    backends = results.get("benchmarks", {}).get("e2e", {}).get("backends", {})
    return {name: value for name, value in backends.items() if "levels" in value}


def _latency(ax: Axes, results: dict[str, Any]) -> bool:
    backends = _e2e_backends(results)
    if not backends:
        return False
    labels: list[str] = []
    p50: list[float] = []
    p99: list[float] = []
    for backend, result in backends.items():
        for level in result["levels"]:
            labels.append(f"{backend}\n{level['clients']} cl.")
            p50.append(level["latency_ms"]["p50"])
            p99.append(level["latency_ms"]["p99"])
    positions = range(len(labels))
    ax.bar([p - 0.2 for p in positions], p50, 0.4, label="p50", color=_COLOURS[0])
    ax.bar([p + 0.2 for p in positions], p99, 0.4, label="p99", color=_COLOURS[1])
    for index, (backend, result) in enumerate(backends.items()):
        empty = result["round_trips_ms"]["gateway_only"]["p50"]
        ax.axhline(
            empty,
            color=_COLOURS[2 + index],
            linestyle=":",
            linewidth=1,
            label=f"empty round trip, {backend} ({empty:.2f} ms)",
        )
    ax.axhline(15.0, color="black", linestyle="--", linewidth=1, label="target p50, 1 client on moto")
    ax.set_yscale("log")
    ax.set_xticks(list(positions), labels, fontsize=7)
    ax.set_ylabel("ms (log)")
    ax.set_title("End-to-end decrypt latency (10 fields, 3 expressions)")
    ax.legend(fontsize=6)
    return True


def _throughput(ax: Axes, results: dict[str, Any]) -> bool:
    backends = _e2e_backends(results)
    if not backends:
        return False
    width = 0.8 / max(len(backends), 1)
    clients = sorted({level["clients"] for r in backends.values() for level in r["levels"]})
    for index, (backend, result) in enumerate(backends.items()):
        by_clients = {level["clients"]: level for level in result["levels"]}
        xs = [i + index * width for i in range(len(clients))]
        ax.bar(
            xs,
            [by_clients[c]["throughput_rps"] if c in by_clients else 0 for c in clients],
            width,
            label=backend,
            color=_COLOURS[index],
        )
        for x, c in zip(xs, clients, strict=True):
            if c in by_clients and by_clients[c]["errors"]:
                ax.annotate(
                    f"{by_clients[c]['errors']} err",
                    (x, by_clients[c]["throughput_rps"]),
                    fontsize=6,
                    color="red",
                    ha="center",
                )
    ax.set_xticks(
        [i + width * (len(backends) - 1) / 2 for i in range(len(clients))],
        [f"{c} client(s)" for c in clients],
    )
    ax.set_ylabel("decrypts / s")
    ax.set_title("End-to-end throughput")
    ax.legend(fontsize=7)
    return True


def _cpu_split(ax: Axes, results: dict[str, Any]) -> bool:
    backends = _e2e_backends(results)
    if not backends:
        return False
    labels: list[str] = []
    splits: list[dict[str, float]] = []
    for backend, result in backends.items():
        for level in result["levels"]:
            labels.append(f"{backend}\n{level['clients']} cl.")
            splits.append(level["cpu_ms_per_request"])
    groups = sorted({name for split in splits for name in split})
    bottom = [0.0] * len(labels)
    for index, group in enumerate(groups):
        values = [split.get(group, 0.0) for split in splits]
        ax.bar(range(len(labels)), values, bottom=bottom, label=group, color=_COLOURS[index % len(_COLOURS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("CPU ms per decrypt")
    ax.set_title("Where the CPU of a decrypt goes (by process)")
    ax.legend(fontsize=6)
    return True


def _key_release(ax: Axes, results: dict[str, Any]) -> bool:
    document = results.get("benchmarks", {}).get("key_release")
    if not document:
        return False
    rows = [
        ("RSA-2048 keygen (CPU)", document["rsa_keygen"]["p50"], 0),
        ("attestation doc (NSM)", document["attestation"]["p50"], 0),
        ("  ECDSA P-384 sign (raw)", document["raw_ecdsa_p384_sign"]["p50"], 2),
        ("KMS front round trip", document["front_round_trip"]["p50"], 0),
        ("  moto Decrypt direct (floor)", document["moto_decrypt_direct"]["p50"], 2),
        ("CMS unwrap (CPU)", document["cms_unwrap"]["p50"], 0),
        ("  RSA-OAEP+AES-CBC (raw)", document["raw_rsa_oaep_aes_cbc"]["p50"], 2),
        ("release, reused key", document["release_reused_key"]["p50"], 1),
        ("release, fresh key", document["release_fresh_key"]["p50"], 3),
    ]
    names = [row[0] for row in rows][::-1]
    values = [row[1] for row in rows][::-1]
    colours = [_COLOURS[row[2]] for row in rows][::-1]
    ax.barh(names, values, color=colours)
    for y, value in enumerate(values):
        ax.annotate(f"{value:.2f}", (value, y), fontsize=6, va="center")
    ax.set_xscale("log")
    ax.set_xlabel("ms, p50 (log)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Key release stages (in-process moto, front, vsock-proxy)")
    return True


def _enclave(ax: Axes, results: dict[str, Any]) -> bool:
    document = results.get("benchmarks", {}).get("enclave")
    if not document:
        return False
    hpke = document["hpke"]
    names = ["enclave path", "raw Recipient.open", "pyhpke"]
    values = [hpke["enclave_per_field_us"], hpke["raw_open_per_field_us"], hpke["pyhpke_open_per_field_us"]]
    ax.bar(names, values, color=[_COLOURS[0], _COLOURS[2], _COLOURS[7]])
    ax.axhline(
        hpke["raw_open_per_field_us"] * hpke["target_ratio"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"target {hpke['target_ratio']}x raw",
    )
    for x, value in enumerate(values):
        ax.annotate(f"{value:.0f}", (x, value), fontsize=7, ha="center", va="bottom")
    rates = ", ".join(
        f"{entry['fields']}: {entry['fields_per_cpu_s']:,.0f}"
        for entry in document.get("requests", {}).values()
    )
    ax.set_ylabel("CPU us per field (P-384)")
    ax.set_title(f"HPKE open per field; fields per CPU s by request size\n{rates}", fontsize=9)
    ax.legend(fontsize=7)
    return True


def _startup(ax: Axes, results: dict[str, Any]) -> bool:
    backends = {
        name: value
        for name, value in results.get("benchmarks", {}).get("startup", {}).get("backends", {}).items()
        if "up_s_p50" in value
    }
    if not backends:
        return False
    names = list(backends)
    ax.bar(
        [i - 0.2 for i in range(len(names))],
        [backends[n]["up_s_p50"] for n in names],
        0.4,
        color=_COLOURS[0],
        label="cold up, s (p50)",
    )
    ax.set_ylabel("seconds")
    twin = ax.twinx()
    twin.bar(
        [i + 0.2 for i in range(len(names))],
        [backends[n]["rss_mib_p50"] for n in names],
        0.4,
        color=_COLOURS[1],
        label="RSS sum, MiB",
    )
    twin.set_ylabel("MiB")
    ax.set_xticks(range(len(names)), names)
    ax.set_title("Emulator cold up and resident memory")
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7, loc="upper left")
    return True


PANELS: tuple[Panel, ...] = (_latency, _throughput, _cpu_split, _key_release, _enclave, _startup)


def draw(results: dict[str, Any], path: Path) -> Path | None:
    """Write the chart to ``path``; ``None`` when matplotlib is missing."""
    try:
        # matplotlib is optional: without it the chart is skipped, not the run.
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # only after use("Agg"): pyplot picks its backend on import
    except ImportError:
        return None
    figure, axes = plt.subplots(3, 2, figsize=(14, 15))
    for ax, panel in zip(axes.flat, PANELS, strict=True):
        if not panel(ax, results):
            ax.set_axis_off()
    load = results.get("load", {})
    figure.suptitle(
        f"nitro-vault benchmarks ({results.get('command', '')}); {results.get('cpus')} CPUs, "
        f"machine {load.get('machine_busy_pct')}% busy during the run, {results.get('generated', '')}",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
