"""A PNG overview of one features day: price, CVD, OFI and fusion, with feed gaps and unrecorded time shaded."""

from __future__ import annotations

import io

import pyarrow as pa

PANELS = (("close", "price (close)"), ("cvd", "CVD"), ("ofi", "OFI"), ("fusion", "fusion"))


def render_chart(table: pa.Table, title: str) -> bytes:
    """The four panels over the day's hours, gap seconds shaded red, unrecorded ones grey; returns PNG bytes."""
    # imported here, not at module level: matplotlib costs ~0.35 s of start-up in every process that loads the code
    # location (code server, each run worker), and only the features asset draws
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hours = table.column("second_of_day").to_numpy() / 3600
    gap = table.column("gap").to_numpy(zero_copy_only=False)
    unrecorded = ~table.column("recorded").to_numpy(zero_copy_only=False)
    figure, axes = plt.subplots(len(PANELS), 1, figsize=(11, 8), sharex=True, dpi=80)
    try:
        for axis, (column, label) in zip(axes, PANELS, strict=True):
            axis.plot(hours, table.column(column).to_numpy(zero_copy_only=False).astype(float), linewidth=0.6)
            axis.set_ylabel(label)
            for flagged, color in ((unrecorded, "grey"), (gap, "red")):
                if flagged.any():
                    axis.fill_between(
                        hours, 0, 1, where=flagged, color=color, alpha=0.25, transform=axis.get_xaxis_transform()
                    )
        axes[-1].set_xlabel("hour of day (UTC)")
        axes[-1].set_xlim(0, 24)
        axes[-1].set_xticks(np.arange(0, 25, 3))
        figure.suptitle(title)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()
