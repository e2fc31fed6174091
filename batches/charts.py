"""Charts as SVG made on the server: no script, no CDN, and a test can read
them. Every label goes through format_html, so data cannot inject markup."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

PALETTE = ["#2e7d32", "#1565c0", "#f9a825", "#c62828", "#6a1b9a", "#00838f", "#757575"]
WIDTH, HEIGHT, LEFT, BOTTOM = 600, 160, 36, 20


def stacked_bars(
    labels: list[str],
    series: dict[str, list[int]],
    *,
    title: str,
    css_class: str = "",
) -> SafeString:
    """One bar per label, stacked by series, with a legend and a tooltip per
    segment. ``series`` maps a name to one value per label."""
    if not labels:
        return format_html(
            '<p class="cc-empty">{}</p>',
            _("%(title)s: no data yet.") % {"title": title},
        )
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = max([*totals, 1])
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM
    step = plot_w / len(labels)
    bar_w = max(step * 0.8, 1)
    rects = []
    for i, label in enumerate(labels):
        y = float(plot_h)
        for k, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            h = value / peak * (plot_h - 4)
            y -= h
            rects.append(
                (
                    f"{LEFT + i * step + (step - bar_w) / 2:.1f}",
                    f"{y:.1f}",
                    f"{bar_w:.1f}",
                    f"{h:.1f}",
                    PALETTE[k % len(PALETTE)],
                    name,
                    f"{label} — {name}: {value}",
                )
            )
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" data-series="{}">'
        "<title>{}</title></rect>",
        rects,
    )
    axis = format_html(
        '<text x="2" y="10" class="cc-axis">{}</text>'
        '<text x="2" y="{}" class="cc-axis">0</text>'
        '<text x="{}" y="{}" class="cc-axis">{}</text>'
        '<text x="{}" y="{}" class="cc-axis" text-anchor="end">{}</text>',
        peak,
        plot_h,
        LEFT,
        HEIGHT - 4,
        labels[0],
        WIDTH,
        HEIGHT - 4,
        labels[-1],
    )
    legend = format_html_join(
        "",
        '<span class="cc-legend-item"><span class="cc-swatch" '
        'style="background: {}"></span>{}</span>',
        ((PALETTE[k % len(PALETTE)], name) for k, name in enumerate(series)),
    )
    return format_html(
        '<figure class="cc-report-chart {}"><figcaption>{}</figcaption>'
        '<svg viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'xmlns="http://www.w3.org/2000/svg">{}{}</svg>'
        '<div class="cc-legend">{}</div></figure>',
        css_class,
        title,
        WIDTH,
        HEIGHT,
        title,
        bars,
        axis,
        legend,
    )
