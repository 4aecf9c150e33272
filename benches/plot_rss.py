"""Plots the server's RSS (and open sockets) over a soak run: benches/results/latest-soak.json
to docs/soak-rss.png. Needs matplotlib (`pip install matplotlib==3.11.2`)."""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "benches/results/latest-soak.json")
dst = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "docs/soak-rss.png")
doc = json.loads(src.read_text())
t = [s["t"] / 60 for s in doc["samples"]]
rss = [s["rss_kib"] / 1024 for s in doc["samples"]]
sockets = [s["sockets"] for s in doc["samples"]]

fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
ax.plot(t, rss, color="tab:blue", label="RSS (MiB)")
ax.axhline(doc["rss_kib"]["idle"] / 1024, color="tab:blue", linestyle=":", label="idle RSS")
ax.set_xlabel("minutes of load")
ax.set_ylabel("RSS (MiB)")
ax.set_ylim(bottom=0)
ax2 = ax.twinx()
ax2.plot(t, sockets, color="tab:orange", alpha=0.6, label="open sockets")
ax2.set_ylabel("open sockets")
ax2.set_ylim(0, max(sockets + [1]) * 1.3)
lines = ax.get_legend_handles_labels()
lines2 = ax2.get_legend_handles_labels()
ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right")
ax.set_title(
    f"quilldb soak: {doc['clients']} clients, {doc['subscriptions']} subscriptions, "
    f"{doc['calls']:,} calls, {doc['errors']} errors, {doc['kills']} kills"
)
fig.tight_layout()
dst.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(dst)
print(f"wrote {dst}")
